#pragma once
// The Tiny Recursive Model (the published `TinyRecursiveReasoningModel_ACTV1_Inner`): one small network L_level
// updates both states; a segment = H_cycles cycles of L_cycles updates of z_L and one of z_H, all but the last cycle
// without gradient, the last one with gradient through all of its L_cycles + 1 updates.
#include <torch/torch.h>

#include "hrm/model/core.h"

namespace hrm {

class TRMCore : public ReasoningCore {
 public:
  explicit TRMCore(const ModelConfig& config);

  InnerCarry empty_carry(int64_t batch_size) override;
  InnerCarry reset_carry(const torch::Tensor& reset, const InnerCarry& carry) override;
  SegmentOutput forward(const InnerCarry& carry, const Batch& batch) override;
  // no_ACT_continue (the published default): q_halt > 0, no target; else q_halt > q_continue with a target.
  HaltingPolicy halting() const override;

  ReasoningModule L_level{nullptr};
  torch::Tensor H_init, L_init;  // [hidden] initial states, forward dtype (buffers)
};

}  // namespace hrm
