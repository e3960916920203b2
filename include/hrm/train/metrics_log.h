#pragma once
// A run's metrics: RUN_DIR/metrics.jsonl (one JSON object per row; non-finite values as null) and metrics.csv.
#include <cstdint>
#include <map>
#include <string>

namespace hrm {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& run_dir);
  // Keeps only rows up to `step` (resume), then appends from there.
  void truncate_after(int64_t step);
  void write(const std::string& split, int64_t step, double epoch, const std::map<std::string, double>& metrics);

 private:
  std::string jsonl_, csv_;
};

}  // namespace hrm
