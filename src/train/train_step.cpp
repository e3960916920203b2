#include "hrm/train/train_step.h"

namespace hrm {

StepResult forward_backward(ACTModel& model, const Carry& carry, const Batch& batch, LossType loss_type,
                            double loss_divisor) {
  auto [new_carry, outputs] = model->forward(carry, batch);
  LossOutput loss = act_loss(new_carry, outputs, loss_type);
  (loss.loss / loss_divisor).backward();
  return StepResult{std::move(new_carry), std::move(outputs), std::move(loss)};
}

}  // namespace hrm
