#pragma once
// The training driver behind `hrm train`: deep supervision over the dataset (one ACT segment per batch, the carry
// kept across batches), AdamATan2 + SignSGD with warm-up and cosine decay, evaluation every eval_interval epochs
// (through an Evaluator the caller supplies: eval/ sits above train/), metrics (JSONL + CSV), a log file
// (RUN_DIR/train.log), atomic checkpoints with everything needed to continue, resume, and clean stops
// (Ctrl-C / SIGTERM, max_steps, time limit) that write a checkpoint.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "hrm/config/train_config.h"
#include "hrm/model/act.h"

namespace hrm {

// Evaluates the model being trained (e.g. on the test split: eval/evaluate.h's test_split_evaluator); returns
// the metrics to log, or an empty map when there is nothing to evaluate on.
using Evaluator = std::function<std::map<std::string, double>(ACTModel& model, const TrainConfig& config)>;

struct TrainOptions {
  bool progress = true;
  Evaluator evaluate;                                      // empty: no evaluation
  std::function<void(const std::string& run_dir)> on_end;  // after the run stops (e.g. write its report)
  // After each training step, on every rank, with the row logged for it (loss, accuracy, lr, samples_per_s, ...).
  std::function<void(int64_t step, const std::map<std::string, double>& row)> on_step;
  // Seconds on a monotonic clock, read for time_limit_minutes, fit_time_limit, checkpoint_every_minutes and the
  // logged rates; empty: std::chrono::steady_clock. Tests give a simulated machine's clock.
  std::function<double()> clock;
};

struct TrainOutcome {
  std::string run_dir;
  int64_t steps = 0, total_steps = 0;
  bool finished = false;     // ran to total_steps
  bool interrupted = false;  // stopped by a signal, max_steps or the time limit (a checkpoint was written)
  std::map<std::string, double> last_eval;
};

// Starts a new run in config.run_dir (default runs/<name>-<timestamp>).
TrainOutcome train(TrainConfig config, const TrainOptions& options = {});
// Continues the run in run_dir from its latest checkpoint; overrides apply to its saved config (e.g. max_steps=0).
TrainOutcome resume_training(const std::string& run_dir, const std::vector<std::string>& overrides,
                             const TrainOptions& options = {});

}  // namespace hrm
