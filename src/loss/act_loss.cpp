#include "hrm/loss/act_loss.h"

#include "hrm/util/error.h"

namespace hrm {

LossType loss_type_from_string(const std::string& name) {
  if (name == "stablemax_cross_entropy") return LossType::StablemaxCrossEntropy;
  if (name == "softmax_cross_entropy") return LossType::SoftmaxCrossEntropy;
  throw Error("unknown loss type '" + name + "' (expected stablemax_cross_entropy or softmax_cross_entropy)");
}

std::string to_string(LossType type) {
  return type == LossType::StablemaxCrossEntropy ? "stablemax_cross_entropy" : "softmax_cross_entropy";
}

torch::Tensor log_stablemax(const torch::Tensor& x, int64_t dim) {
  const torch::Tensor s = torch::where(x < 0, 1 / (1 - x + 1e-30), x + 1);
  return torch::log(s / s.sum(dim, /*keepdim=*/true));
}

torch::Tensor stablemax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  const torch::Tensor logprobs = log_stablemax(logits.to(torch::kDouble), -1);
  const torch::Tensor valid = labels != ignore_index;
  const torch::Tensor safe_labels = torch::where(valid, labels, torch::zeros_like(labels)).to(torch::kLong);
  const torch::Tensor picked = logprobs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1);
  return -torch::where(valid, picked, torch::zeros_like(picked));
}

torch::Tensor softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& labels, int64_t ignore_index) {
  const int64_t V = logits.size(-1);
  return torch::nn::functional::cross_entropy(
             logits.to(torch::kFloat).reshape({-1, V}), labels.to(torch::kLong).reshape({-1}),
             torch::nn::functional::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kNone))
      .view(labels.sizes());
}

LossOutput act_loss(const Carry& new_carry, const ACTOutputs& outputs, LossType type) {
  const torch::Tensor& labels = new_carry.current.labels;
  Metrics m;
  torch::Tensor loss_divisor, seq_is_correct;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor mask = labels != kIgnoreLabel;
    const torch::Tensor loss_counts = mask.sum(-1);
    loss_divisor = loss_counts.clamp_min(1).unsqueeze(-1);
    const torch::Tensor is_correct = mask & (outputs.logits.argmax(-1) == labels);
    seq_is_correct = is_correct.sum(-1) == loss_counts;

    const torch::Tensor valid = new_carry.halted & (loss_counts > 0);
    const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().device(labels.device()));
    m["count"] = valid.sum();
    m["accuracy"] = torch::where(valid, (is_correct.to(torch::kFloat) / loss_divisor).sum(-1), zero).sum();
    m["exact_accuracy"] = (valid & seq_is_correct).sum();
    m["q_halt_accuracy"] = (valid & ((outputs.q_halt_logits >= 0) == seq_is_correct)).sum();
    m["steps"] = torch::where(valid, new_carry.steps, torch::zeros_like(new_carry.steps)).sum();
  }

  const torch::Tensor per_token = type == LossType::StablemaxCrossEntropy
                                      ? stablemax_cross_entropy(outputs.logits, labels)
                                      : softmax_cross_entropy(outputs.logits, labels);
  const torch::Tensor lm_loss = (per_token / loss_divisor).sum();
  namespace F = torch::nn::functional;
  const auto sum = F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum);
  const torch::Tensor q_halt_loss = F::binary_cross_entropy_with_logits(
      outputs.q_halt_logits, seq_is_correct.to(outputs.q_halt_logits.scalar_type()), sum);
  m["lm_loss"] = lm_loss.detach();
  m["q_halt_loss"] = q_halt_loss.detach();

  torch::Tensor q_losses = q_halt_loss;
  if (outputs.target_q_continue.defined()) {
    const torch::Tensor q_continue_loss =
        F::binary_cross_entropy_with_logits(outputs.q_continue_logits, outputs.target_q_continue, sum);
    m["q_continue_loss"] = q_continue_loss.detach();
    q_losses = q_losses + q_continue_loss;
  }
  return LossOutput{lm_loss + 0.5 * q_losses, std::move(m)};
}

}  // namespace hrm
