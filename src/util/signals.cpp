#include "hrm/util/signals.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>

namespace hrm {
namespace {
std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal = sig; }
}  // namespace

int stop_signal() { return g_signal.load(); }

// oneDNN 2.x's JIT sgemm kernels (hrm's float32 linear on x86) point rsp at a heap workspace while they run, so a
// signal handled on a thread inside one writes its frame into the heap (oneDNN issue #4845, fixed upstream in
// March 2026; Debian 12 ships 2.6.3): 300 SIGTERMs at `hrm --threads 1 train` aborted 9 runs in 10 with "corrupted
// size vs. prev_size". Threads that compute therefore block SIGINT and SIGTERM, and one thread that only waits
// takes them: the handler (or the default action) runs there.
void deliver_stop_signals_on_a_waiting_thread() {
  static std::once_flag once;
  std::call_once(once, [] {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // this thread and every thread it starts from now on
    std::thread([stop] {
      pthread_sigmask(SIG_UNBLOCK, &stop, nullptr);
      for (;;) ::pause();
    }).detach();
  });
}

StopSignalScope::StopSignalScope() {
  deliver_stop_signals_on_a_waiting_thread();
  g_signal = 0;
  old_int_ = std::signal(SIGINT, on_signal);
  old_term_ = std::signal(SIGTERM, on_signal);
}

StopSignalScope::~StopSignalScope() {
  std::signal(SIGINT, old_int_);
  std::signal(SIGTERM, old_term_);
}

void report_file_size_limit_as_error() { std::signal(SIGXFSZ, SIG_IGN); }

}  // namespace hrm
