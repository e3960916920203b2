#pragma once
// What a model consumes: one batch of puzzles, and the label value that marks a position as not scored.
#include <cstdint>

#include <torch/types.h>

namespace hrm {

// Labels equal to this are ignored by losses and metrics (the published value).
constexpr int64_t kIgnoreLabel = -100;

// One batch of puzzles. inputs/labels: [B, seq_len] integer tokens (labels kIgnoreLabel = ignored);
// puzzle_identifiers: [B]. A batch may be one rank's rows of a larger global batch: random draws made per sample
// (ACT exploration) are drawn for the whole global batch and sliced at row_offset, so that they do not depend on
// how many processes share it.
struct Batch {
  torch::Tensor inputs, labels, puzzle_identifiers;
  int64_t global_size = 0;  // rows of the global batch; 0 = this batch is the global batch
  int64_t row_offset = 0;   // where this batch's rows start in the global batch

  int64_t size() const { return inputs.size(0); }
  int64_t global_rows() const { return global_size > 0 ? global_size : size(); }
  Batch to(const torch::Device& device) const;
};

}  // namespace hrm
