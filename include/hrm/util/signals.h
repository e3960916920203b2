#pragma once
// Ctrl-C and SIGTERM as a request to stop cleanly: long loops (training steps, evaluation batches) poll
// stop_signal() and end at their next boundary instead of the process dying mid-write.
#include <string>

#include "hrm/util/error.h"

namespace hrm {

// The signal received while a StopSignalScope was alive (SIGINT or SIGTERM), or 0.
int stop_signal();

// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts afterwards) and starts one thread that
// does nothing but receive them, so that no signal interrupts a computing thread (oneDNN's JIT matrix products
// corrupt the heap when one does: signals.cpp). Idempotent. The CLI calls it first thing in main; programs linking
// hrm should too, before they start threads (LibTorch's OpenMP workers start at the first parallel operation):
// threads started before it still take signals themselves.
void deliver_stop_signals_on_a_waiting_thread();

// Catches SIGINT and SIGTERM while alive (calling deliver_stop_signals_on_a_waiting_thread first) (the previous
// handlers come back at destruction) and clears the flag.
class StopSignalScope {
 public:
  StopSignalScope();
  ~StopSignalScope();
  StopSignalScope(const StopSignalScope&) = delete;
  StopSignalScope& operator=(const StopSignalScope&) = delete;

 private:
  void (*old_int_)(int);
  void (*old_term_)(int);
};

// A write past the file size limit (ulimit -f) then fails with EFBIG, which hrm reports as an error naming the
// file, instead of SIGXFSZ killing the process mid-write. The CLI calls it at start; programs linking hrm may too.
void report_file_size_limit_as_error();

// Thrown by a loop that stopped early because of stop_signal().
class Interrupted : public Error {
 public:
  explicit Interrupted(const std::string& what) : Error(what) {}
};

}  // namespace hrm
