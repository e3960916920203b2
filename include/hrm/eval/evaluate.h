#pragma once
// Evaluation of a model on a dataset's test split (the published evaluate(): every batch from a fresh carry, in
// eval mode, until every sample halts), the task's checker metrics, and the whole chain for a checkpoint.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "hrm/data/loader.h"
#include "hrm/data/task.h"
#include "hrm/loss/act_loss.h"
#include "hrm/model/act.h"
#include "hrm/train/trainer.h"

namespace hrm {

struct EvalOutput {
  std::map<std::string, double> metrics;  // count, accuracy, exact_accuracy, q_halt_accuracy, steps, lm_loss, ...
  // Per real (unpadded) test example, in dataset order:
  torch::Tensor inputs, labels;           // int32 [N, S] (labels kIgnoreLabel where ignored)
  torch::Tensor predictions;              // int32 [N, S]: argmax of the last segment
  torch::Tensor q_halt_logits;            // float [N]
  torch::Tensor puzzle_identifiers;       // int32 [N]
  int64_t median_batch_minor_faults = 0;  // page faults of the median batch (steady state; the mean adds heap growth)
};

// Batches of the dataset's configured global batch size; the dataset must be opened in test mode.
EvalOutput evaluate(ACTModel& model, const data::PuzzleDataset& test, LossType loss_type, bool progress = true);

// Adds valid_solutions (the fraction of predictions the task's checker accepts) for tasks with a checker.
void add_checker_metrics(data::TaskKind kind, const EvalOutput& out, std::map<std::string, double>* metrics);

// The trainer's evaluation: config.data_path's test split (when there is one) with the task's checker metrics.
Evaluator test_split_evaluator(bool progress);

// `hrm eval`: load a checkpoint (eval/inference.h), evaluate it on the test split, add the task's metrics (checker;
// ARC: voting and pass@K), and write what was asked for.
struct EvalRequest {
  std::string checkpoint;              // hrm checkpoint, run folder, or published state dict (with config)
  std::string data_dir, config_path;   // default: the checkpoint's dataset; config: for published state dicts
  std::vector<std::string> overrides;  // e.g. arch.halt_max_steps=32
  std::string device = "auto";
  std::string weights = "auto";    // auto (EMA when present) | ema | raw
  int64_t batch_size = 0;          // 0: the training global batch size, at most 1024
  std::string predictions_prefix;  // writes PREFIX_{predictions,q_halt_logits,inputs,labels}.npy
  std::string submission_path;     // ARC: a Kaggle submission.json
  bool progress = true;
};
struct EvalReport {
  std::map<std::string, double> metrics;
  std::string data_path;
  data::TaskKind kind = data::TaskKind::Generic;
  int64_t halt_max_steps = 0;
  bool ema = false;  // evaluated with the checkpoint's EMA weights
  int64_t batches = 0;
  double minor_faults_per_batch = 0;      // page faults the kernel served during the evaluation, per batch
  int64_t median_batch_minor_faults = 0;  // those of the median batch
};
EvalReport evaluate_checkpoint(const EvalRequest& request);

// Metrics as one JSON object (non-finite values as null).
std::string metrics_json(const std::map<std::string, double>& metrics);

}  // namespace hrm
