#pragma once
// ARC scoring as published: every augmented prediction is mapped back to the original task, predictions vote per
// test input, and the top K answers are scored (pass@K) and written as a Kaggle submission.
#include <cstdint>
#include <map>
#include <string>

#include "hrm/eval/evaluate.h"

namespace hrm {

struct ArcVoteResult {
  std::map<std::string, double> pass_at;  // "pass@1", "pass@2", "pass@5", ... over test inputs
  std::string submission_json;            // {task: [{"attempt_1": grid, "attempt_2": grid}, ...]}
  int64_t test_inputs = 0;
};

// Maps each augmented prediction back (crop at EOS, inverse colour map and dihedral transform), votes per test input
// (rank by count, ties by mean halting probability) and scores against DIR/test_puzzles.json.
ArcVoteResult arc_vote(const std::string& dataset_dir, const EvalOutput& out);

}  // namespace hrm
