#pragma once
// The published optimizer setup for a model of the family: AdamATan2 over every parameter and SparseSignSGD over
// the puzzle embedding (when the model has one).
#include <memory>

#include "hrm/model/act.h"
#include "hrm/optim/optimizers.h"

namespace hrm {

struct OptimizerConfig {
  double lr = 1e-4;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double puzzle_emb_lr = 1e-2;
  double puzzle_emb_weight_decay = 0.1;
};

class ModelOptimizer {
 public:
  ModelOptimizer(ACTModel& model, const OptimizerConfig& config);
  void step(double lr, double puzzle_emb_lr);
  void zero_grad();

  optim::AdamATan2& adam() { return adam_; }
  optim::SparseSignSGD* sparse() { return sparse_.get(); }

 private:
  optim::AdamATan2 adam_;
  std::unique_ptr<optim::SparseSignSGD> sparse_;
};

}  // namespace hrm
