#include "hrm/util/signals.h"

#include <atomic>
#include <csignal>

namespace hrm {
namespace {
std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal = sig; }
}  // namespace

int stop_signal() { return g_signal.load(); }

StopSignalScope::StopSignalScope() {
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
