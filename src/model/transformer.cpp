#include "hrm/model/transformer.h"

#include "hrm/util/error.h"

namespace hrm {

TransformerCore::TransformerCore(const ModelConfig& config) : ReasoningCore(config) {
  check(config_.H_layers >= 1, "transformer: H_layers must be >= 1");
  H_level = register_module("H_level", ReasoningModule(config_, config_.H_layers));
  H_init = register_initial_state("H_init");
}

SegmentOutput TransformerCore::forward(const InnerCarry& carry, const Batch& batch) {
  const nn::RopeTables rope = rope_tables(carry.z_H.device());
  // One pass, with gradient.
  const torch::Tensor z_H = observed("z_H", H_level(carry.z_H, input_embeddings(batch), rope));
  return output_heads(z_H, InnerCarry{z_H.detach(), {}});
}

InnerCarry TransformerCore::empty_carry(int64_t batch_size) { return zero_carry(batch_size, {H_init, {}}); }

InnerCarry TransformerCore::reset_carry(const torch::Tensor& reset, const InnerCarry& carry) {
  return reset_to(reset, carry, {H_init, {}});
}

HaltingPolicy TransformerCore::halting() const {
  HaltingPolicy p{HaltRule::QHaltAboveQContinue, /*target_q=*/false};
  p.adaptive_in_training = config_.act_enabled;
  p.adaptive_at_eval = config_.act_inference;
  return p;
}

}  // namespace hrm
