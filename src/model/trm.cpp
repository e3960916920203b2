#include "hrm/model/trm.h"

#include "hrm/util/error.h"

namespace hrm {

TRMCore::TRMCore(const ModelConfig& config) : ReasoningCore(config) {
  check(config_.L_layers >= 1, "trm: L_layers must be >= 1");
  L_level = register_module("L_level", ReasoningModule(config_, config_.L_layers));
  const auto opts = torch::TensorOptions().dtype(config_.dtype());
  torch::Tensor h0 = torch::empty({config_.hidden_size}, opts), l0 = torch::empty({config_.hidden_size}, opts);
  H_init = register_buffer("H_init", nn::trunc_normal_(h0, 1.0));
  L_init = register_buffer("L_init", nn::trunc_normal_(l0, 1.0));
}

SegmentOutput TRMCore::forward(const InnerCarry& carry, const Batch& batch) {
  const nn::RopeTables rope = rope_tables(carry.z_H.device());
  const torch::Tensor x = input_embeddings(batch);
  const int64_t N = config_.H_cycles, T = config_.L_cycles;

  torch::Tensor z_H = carry.z_H, z_L = carry.z_L;
  {
    // The first N - 1 cycles run without gradient.
    torch::NoGradGuard no_grad;
    for (int64_t h = 0; h < N - 1; ++h) {
      for (int64_t l = 0; l < T; ++l) z_L = observed("z_L", L_level(z_L, z_H + x, rope));
      z_H = observed("z_H", L_level(z_H, z_L, rope));
    }
  }
  // The last cycle with gradient through all of its T + 1 updates, by the same network.
  for (int64_t l = 0; l < T; ++l) z_L = observed("z_L", L_level(z_L, z_H + x, rope));
  z_H = observed("z_H", L_level(z_H, z_L, rope));
  return output_heads(z_H, InnerCarry{z_H.detach(), z_L.detach()});
}

InnerCarry TRMCore::empty_carry(int64_t batch_size) {
  const auto opts = H_init.options();
  return InnerCarry{torch::zeros({batch_size, config_.total_seq_len(), config_.hidden_size}, opts),
                    torch::zeros({batch_size, config_.total_seq_len(), config_.hidden_size}, opts)};
}

InnerCarry TRMCore::reset_carry(const torch::Tensor& reset, const InnerCarry& carry) {
  const torch::Tensor r = reset.view({-1, 1, 1});
  return InnerCarry{torch::where(r, H_init, carry.z_H), torch::where(r, L_init, carry.z_L)};
}

HaltingPolicy TRMCore::halting() const {
  if (config_.no_ACT_continue) return HaltingPolicy{HaltRule::QHaltPositive, /*target_q=*/false};
  return HaltingPolicy{HaltRule::QHaltAboveQContinue, /*target_q=*/true};
}

}  // namespace hrm
