#include "hrm/model/hrm.h"

#include "hrm/util/error.h"

namespace hrm {

HRMCore::HRMCore(const ModelConfig& config) : ReasoningCore(config) {
  check(config_.H_layers >= 1 && config_.L_layers >= 1, "hrm: H_layers and L_layers must be >= 1");
  H_level = register_module("H_level", ReasoningModule(config_, config_.H_layers));
  L_level = register_module("L_level", ReasoningModule(config_, config_.L_layers));
  H_init = register_initial_state("H_init");
  L_init = register_initial_state("L_init");
}

SegmentOutput HRMCore::forward(const InnerCarry& carry, const Batch& batch) {
  const nn::RopeTables rope = rope_tables(carry.z_H.device());
  const torch::Tensor x = input_embeddings(batch);
  const int64_t N = config_.H_cycles, T = config_.L_cycles;

  torch::Tensor z_H = carry.z_H, z_L = carry.z_L;
  {
    // All updates but the last L and H ones run without gradient: O(1) memory in N*T.
    torch::NoGradGuard no_grad;
    for (int64_t h = 0; h < N; ++h) {
      for (int64_t l = 0; l < T; ++l) {
        if (h == N - 1 && l == T - 1) break;
        z_L = observed("z_L", L_level(z_L, z_H + x, rope));
      }
      if (h < N - 1) z_H = observed("z_H", H_level(z_H, z_L, rope));
    }
  }
  // One-step gradient: the last L and H updates.
  z_L = observed("z_L", L_level(z_L, z_H + x, rope));
  z_H = observed("z_H", H_level(z_H, z_L, rope));
  return output_heads(z_H, InnerCarry{z_H.detach(), z_L.detach()});
}

InnerCarry HRMCore::empty_carry(int64_t batch_size) { return zero_carry(batch_size, {H_init, L_init}); }

InnerCarry HRMCore::reset_carry(const torch::Tensor& reset, const InnerCarry& carry) {
  return reset_to(reset, carry, {H_init, L_init});
}

HaltingPolicy HRMCore::halting() const {
  if (config_.no_ACT_continue) return HaltingPolicy{HaltRule::QHaltPositive, /*target_q=*/false};
  return HaltingPolicy{HaltRule::QHaltAboveQContinue, /*target_q=*/true};
}

}  // namespace hrm
