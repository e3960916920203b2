#pragma once
// The Hierarchical Reasoning Model (the published `HierarchicalReasoningModel_ACTV1_Inner`): a slow high-level
// module H and a fast low-level module L; one segment = N = H_cycles high-level cycles of T = L_cycles low-level
// steps, trained with the one-step gradient.
#include <torch/torch.h>

#include "hrm/model/core.h"

namespace hrm {

class HRMCore : public ReasoningCore {
 public:
  explicit HRMCore(const ModelConfig& config);

  InnerCarry empty_carry(int64_t batch_size) override;
  InnerCarry reset_carry(const torch::Tensor& reset, const InnerCarry& carry) override;
  SegmentOutput forward(const InnerCarry& carry, const Batch& batch) override;
  // q_halt > q_continue with a bootstrapped target; no_ACT_continue: q_halt > 0 and no target.
  HaltingPolicy halting() const override;

  ReasoningModule H_level{nullptr}, L_level{nullptr};
  torch::Tensor H_init, L_init;  // [hidden] initial states, forward dtype (buffers)
};

}  // namespace hrm
