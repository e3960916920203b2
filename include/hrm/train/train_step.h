#pragma once
// One training step with deep supervision: an ACT segment on the carried state, the loss, and backward of
// loss / global_batch_size (the optimizer step is the caller's: ModelOptimizer).
#include "hrm/loss/act_loss.h"
#include "hrm/model/act.h"

namespace hrm {

struct StepResult {
  Carry carry;
  ACTOutputs outputs;
  LossOutput loss;
};

// Forward + loss + backward of loss / loss_divisor (the global batch size). Gradients are left on the parameters.
StepResult forward_backward(ACTModel& model, const Carry& carry, const Batch& batch, LossType loss_type,
                            double loss_divisor);

}  // namespace hrm
