#pragma once
// Ctrl-C and SIGTERM as a request to stop cleanly: long loops (training steps, evaluation batches) poll
// stop_signal() and end at their next boundary instead of the process dying mid-write.
#include <string>

#include "hrm/util/error.h"

namespace hrm {

// The signal received while a StopSignalScope was alive (SIGINT or SIGTERM), or 0.
int stop_signal();

// Catches SIGINT and SIGTERM while alive (the previous handlers come back at destruction) and clears the flag.
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
