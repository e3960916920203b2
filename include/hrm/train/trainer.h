#pragma once
// The training driver behind `hrm train`: deep supervision over the dataset (one ACT segment per batch, the carry
// kept across batches), AdamATan2 + SignSGD with warm-up and cosine decay, evaluation every eval_interval epochs,
// metrics (JSONL + CSV), atomic checkpoints with everything needed to continue, resume, and clean stops
// (Ctrl-C / SIGTERM, max_steps, time limit) that write a checkpoint.
#include <map>
#include <string>
#include <vector>

#include "hrm/config/train_config.h"

namespace hrm {

struct TrainOutcome {
  std::string run_dir;
  int64_t steps = 0, total_steps = 0;
  bool finished = false;     // ran to total_steps
  bool interrupted = false;  // stopped by a signal, max_steps or the time limit (a checkpoint was written)
  std::map<std::string, double> last_eval;
};

// Starts a new run in config.run_dir (default runs/<name>-<timestamp>).
TrainOutcome train(TrainConfig config, bool progress = true);
// Continues the run in run_dir from its latest checkpoint; overrides apply to its saved config (e.g. max_steps=0).
TrainOutcome resume_training(const std::string& run_dir, const std::vector<std::string>& overrides,
                             bool progress = true);

// Device from "auto" | "cpu" | "cuda" | "cuda:N" (auto: CUDA when this LibTorch build has it).
std::string resolve_device(const std::string& device);
// Sets the intra-op thread count (0 = all cores) and keeps freed CPU memory for reuse (keep_freed_cpu_memory).
void set_threads(int64_t threads);

// Latest checkpoint file of a run folder (throws when there is none).
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace hrm
