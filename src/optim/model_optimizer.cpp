#include "hrm/optim/model_optimizer.h"

namespace hrm {
namespace {
optim::NamedTensors named_parameters(ACTModel& model) {
  optim::NamedTensors out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}
}  // namespace

ModelOptimizer::ModelOptimizer(ACTModel& model, const OptimizerConfig& c)
    : adam_(named_parameters(model), optim::AdamATan2Options{c.beta1, c.beta2, c.weight_decay}) {
  if (model->inner->puzzle_emb)
    sparse_ = std::make_unique<optim::SparseSignSGD>(model->inner->puzzle_emb, c.puzzle_emb_weight_decay);
}

void ModelOptimizer::step(double lr, double puzzle_emb_lr) {
  if (sparse_) sparse_->step(puzzle_emb_lr);
  adam_.step(lr);
}

void ModelOptimizer::zero_grad() {
  if (sparse_) sparse_->zero_grad();
  adam_.zero_grad();
}

}  // namespace hrm
