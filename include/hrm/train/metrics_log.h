#pragma once
// A run's metrics: RUN_DIR/metrics.jsonl (one JSON object per row; non-finite values as null) and metrics.csv.
#include <cstdint>
#include <map>
#include <string>

namespace hrm {

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& run_dir);
  // Keeps only the rows up to `step` (resume), then appends from there. An "eval" row at `step` itself is kept only
  // with keep_eval_at_step: a checkpoint written before that step's evaluation (a periodic one, or a stop's) resumes
  // into the evaluation again, which logs its row anew.
  void truncate_after(int64_t step, bool keep_eval_at_step);
  void write(const std::string& split, int64_t step, double epoch, const std::map<std::string, double>& metrics);

 private:
  std::string jsonl_, csv_;
};

}  // namespace hrm
