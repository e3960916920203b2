#pragma once
// Losses of the model family (the published `ACTLossHead`): sequence-to-sequence loss per sequence (mean over its valid
// tokens), plus the Q-learning halting losses.
#include <map>
#include <string>

#include <torch/torch.h>

#include "hrm/model/act.h"

namespace hrm {

enum class LossType { StablemaxCrossEntropy, SoftmaxCrossEntropy };
LossType loss_type_from_string(const std::string& name);  // "stablemax_cross_entropy" | "softmax_cross_entropy"
std::string to_string(LossType type);

// Stablemax: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0; log p = log(s / sum s). Computed in float64 as the
// reference. Returns per-token losses [B, S] (0 where label == ignore_index).
torch::Tensor stablemax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                      int64_t ignore_index = kIgnoreLabel);
torch::Tensor log_stablemax(const torch::Tensor& x, int64_t dim = -1);
// Softmax cross-entropy in float32; per-token losses [B, S].
torch::Tensor softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                    int64_t ignore_index = kIgnoreLabel);

// Metrics as 0-dim device tensors (sums over the batch, no host sync): count, accuracy, exact_accuracy,
// q_halt_accuracy, steps, lm_loss, q_halt_loss and (when a continue target exists) q_continue_loss.
// Only halted samples with at least one valid label are counted, as in the reference.
using Metrics = std::map<std::string, torch::Tensor>;

struct LossOutput {
  torch::Tensor loss;  // lm_loss + 0.5 * (q_halt_loss + q_continue_loss); float64 with stablemax
  Metrics metrics;
};

LossOutput act_loss(const Carry& new_carry, const ACTOutputs& outputs, LossType type);

}  // namespace hrm
