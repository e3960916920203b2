#pragma once
// A progress bar on stderr: redrawn in place on a terminal, a plain line every 10% otherwise.
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace hrm {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, bool enabled = true);
  ~ProgressBar();
  void add(int64_t n = 1);
  void finish();

 private:
  void draw(bool force);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mutex_;
};

}  // namespace hrm
