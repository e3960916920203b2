#pragma once
// Evaluation of a model on a dataset's test split (the published evaluate(): every batch from a fresh carry, in
// eval mode, for halt_max_steps segments), plus the task-specific checks: Sudoku and Maze checkers, and ARC voting
// across augmentations with pass@K and a Kaggle submission.
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "hrm/data/dataset.h"
#include "hrm/loss/act_loss.h"
#include "hrm/model/hrm.h"
#include "hrm/config/train_config.h"

namespace hrm {

struct EvalOutput {
  std::map<std::string, double> metrics;  // count, accuracy, exact_accuracy, q_halt_accuracy, steps, lm_loss, ...
  // Per real (unpadded) test example, in dataset order:
  torch::Tensor inputs, labels;           // int32 [N, S] (labels -100 where ignored)
  torch::Tensor predictions;              // int32 [N, S]: argmax of the last segment
  torch::Tensor q_halt_logits;            // float [N]
  torch::Tensor puzzle_identifiers;       // int32 [N]
};

// `batch_size` 0: the dataset's configured global batch size.
EvalOutput evaluate(HRM& model, const data::PuzzleDataset& test, LossType loss_type, bool progress = true);

// A model ready for inference: from an hrm checkpoint or a run folder (its latest checkpoint), whose saved training
// config gives data_path and loss, or from a published state dict plus a training config YAML (`config_path`) and
// a dataset (`data_dir`).
// `overrides` ("arch.halt_max_steps=32", ...) apply to the model config before it is built (weights must fit).
struct InferenceSetup {
  HRM model{nullptr};
  std::string data_path;
  LossType loss_type = LossType::StablemaxCrossEntropy;
  int64_t global_batch_size = 256;
};
InferenceSetup load_for_inference(const std::string& checkpoint, const std::string& data_dir,
                                  const std::string& config_path, const std::vector<std::string>& overrides,
                                  const std::string& device);

enum class TaskKind { Sudoku, Maze, Arc, Generic };
// From the dataset's shape: ARC has test_puzzles.json; Sudoku: seq_len n^2 and vocab n+2 for n in {4,6,9};
// Maze: vocab 6 on a square grid.
TaskKind detect_task_kind(const std::string& dataset_dir, const data::DatasetMetadata& metadata);
std::string to_string(TaskKind kind);

// Adds valid_solutions (fraction of predictions the checker accepts) for Sudoku and Maze.
void add_checker_metrics(TaskKind kind, const EvalOutput& out, std::map<std::string, double>* metrics);

struct ArcVoteResult {
  std::map<std::string, double> pass_at;  // "pass@1", "pass@2", "pass@5", ... over test inputs
  std::string submission_json;            // {task: [{"attempt_1": grid, "attempt_2": grid}, ...]}
  int64_t test_inputs = 0;
};
// Maps each augmented prediction back (crop at EOS, inverse colour map and dihedral transform), votes per test input
// (rank by count, ties by mean halting probability) and scores against DIR/test_puzzles.json.
ArcVoteResult arc_vote(const std::string& dataset_dir, const EvalOutput& out);

}  // namespace hrm
