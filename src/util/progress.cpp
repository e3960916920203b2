#include "hrm/util/progress.h"

#include <unistd.h>
#include <cstdio>

namespace hrm {

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::add(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += n;
  draw(false);
}

void ProgressBar::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_ || !enabled_) return;
  finished_ = true;
  draw(true);
  if (tty_) std::fprintf(stderr, "\n");
}

void ProgressBar::draw(bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(done_) / static_cast<double>(total_) : 1.0;
  if (tty_) {
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    const double eta = frac > 0 ? elapsed * (1 - frac) / frac : 0;
    std::fprintf(stderr, "\r%s [%s] %lld/%lld %.1fs eta %.1fs   ", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done_), static_cast<long long>(total_), elapsed, eta);
  } else {
    const int decile = static_cast<int>(frac * 10);
    if (decile == last_decile_) return;  // the final draw falls in the last decile printed or a new one
    last_decile_ = decile;
    std::fprintf(stderr, "%s: %lld/%lld (%d%%) %.1fs\n", label_.c_str(), static_cast<long long>(done_),
                 static_cast<long long>(total_), decile * 10, elapsed);
  }
  std::fflush(stderr);
}

}  // namespace hrm
