#include "hrm/train/train_step.h"

namespace hrm {

namespace {
optim::NamedTensors named_parameters(HRM& model) {
  optim::NamedTensors out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}
}  // namespace

HRMOptimizer::HRMOptimizer(HRM& model, const OptimizerConfig& c)
    : adam_(named_parameters(model), optim::AdamATan2Options{c.beta1, c.beta2, c.weight_decay}) {
  if (model->inner->puzzle_emb)
    sparse_ = std::make_unique<optim::SparseSignSGD>(model->inner->puzzle_emb, c.puzzle_emb_weight_decay);
}

void HRMOptimizer::step(double lr, double puzzle_emb_lr) {
  if (sparse_) sparse_->step(puzzle_emb_lr);
  adam_.step(lr);
}

void HRMOptimizer::zero_grad() {
  if (sparse_) sparse_->zero_grad();
  adam_.zero_grad();
}

StepResult forward_backward(HRM& model, const Carry& carry, const Batch& batch, LossType loss_type,
                            double loss_divisor) {
  auto [new_carry, outputs] = model->forward(carry, batch);
  LossOutput loss = act_loss(new_carry, outputs, loss_type);
  (loss.loss / loss_divisor).backward();
  return StepResult{std::move(new_carry), std::move(outputs), std::move(loss)};
}

}  // namespace hrm
