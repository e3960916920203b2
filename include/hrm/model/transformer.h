#pragma once
// The Transformer baseline (the published `Model_ACTV2_Inner`): no recursion inside a segment; one stack H_level of
// H_layers blocks runs once on z_H + x with gradient. ACT carries z_H across segments. Halting: q_halt > q_continue,
// never a bootstrapped target; while training only with act_enabled, at evaluation only with act_inference.
#include <torch/torch.h>

#include "hrm/model/core.h"

namespace hrm {

class TransformerCore : public ReasoningCore {
 public:
  explicit TransformerCore(const ModelConfig& config);

  InnerCarry empty_carry(int64_t batch_size) override;
  InnerCarry reset_carry(const torch::Tensor& reset, const InnerCarry& carry) override;
  SegmentOutput forward(const InnerCarry& carry, const Batch& batch) override;
  HaltingPolicy halting() const override;

  ReasoningModule H_level{nullptr};
  torch::Tensor H_init;  // [hidden] initial state, forward dtype (buffer)
};

}  // namespace hrm
