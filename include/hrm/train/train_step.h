#pragma once
// One training step of HRM with deep supervision: an ACT segment on the carried state, the loss, backward of
// loss / global_batch_size, then SignSGD on the puzzle embedding and AdamATan2 on everything else.
#include <memory>

#include <torch/torch.h>

#include "hrm/loss/act_loss.h"
#include "hrm/model/hrm.h"
#include "hrm/optim/optimizers.h"

namespace hrm {

struct OptimizerConfig {
  double lr = 1e-4;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double puzzle_emb_lr = 1e-2;
  double puzzle_emb_weight_decay = 0.1;
};

// AdamATan2 over the model's parameters and SparseSignSGD over its puzzle embedding (if any).
class HRMOptimizer {
 public:
  HRMOptimizer(HRM& model, const OptimizerConfig& config);
  void step(double lr, double puzzle_emb_lr);
  void zero_grad();

  optim::AdamATan2& adam() { return adam_; }
  optim::SparseSignSGD* sparse() { return sparse_.get(); }

 private:
  optim::AdamATan2 adam_;
  std::unique_ptr<optim::SparseSignSGD> sparse_;
};

struct StepResult {
  Carry carry;
  ACTOutputs outputs;
  LossOutput loss;
};

// Forward + loss + backward of loss / loss_divisor (the global batch size). Gradients are left on the parameters.
StepResult forward_backward(HRM& model, const Carry& carry, const Batch& batch, LossType loss_type,
                            double loss_divisor);

}  // namespace hrm
