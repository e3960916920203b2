#pragma once
// Adaptive computation time around any model of the family (the published `*_ACTV1` wrappers): segments run on a
// carried state; halted samples are replaced by the next batch's data; a Q-learning head decides halting.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "hrm/model/core.h"

namespace hrm {

using StateDict = std::map<std::string, torch::Tensor>;

// Per-sample state carried across segments (and across training batches).
struct Carry {
  InnerCarry inner;
  torch::Tensor steps;   // int32 [B]: segments run for the current puzzle
  torch::Tensor halted;  // bool [B]: halted samples are replaced by the next batch's data
  Batch current;         // the data each sample is working on

  // "z_H", "z_L" (when defined), "steps", "halted", "inputs", "labels", "puzzle_identifiers", each under `prefix`.
  StateDict state_dict(const std::string& prefix) const;
  // The inverse; states in `dtype` and everything on `device`. Errors name `source` and the missing key.
  static Carry from_state_dict(const StateDict& state, const std::string& prefix, c10::ScalarType dtype,
                               const torch::Device& device, const std::string& source);
};

struct ACTOutputs {
  torch::Tensor logits;             // [B, seq_len, vocab], forward dtype
  torch::Tensor q_halt_logits;      // [B] float32
  torch::Tensor q_continue_logits;  // [B] float32
  torch::Tensor target_q_continue;  // [B] float32; only in training with a bootstrapped target
};

class ACTModelImpl : public torch::nn::Module {
 public:
  explicit ACTModelImpl(std::shared_ptr<ReasoningCore> core);

  // A carry with every sample halted, so the first forward loads the batch.
  Carry initial_carry(const Batch& batch);
  // One ACT segment: resets halted samples, runs the core, decides halting.
  std::pair<Carry, ACTOutputs> forward(const Carry& carry, const Batch& batch);

  const ModelConfig& config() const { return inner->config(); }
  torch::Device device() const { return inner->device(); }

  std::shared_ptr<ReasoningCore> inner;  // registered as "inner", as in the published state dicts
};
TORCH_MODULE(ACTModel);

// Runs segments on `batch` from a fresh carry until every sample has halted (at most halt_max_steps), calling
// `each(segment, carry, outputs)` after every segment; returns the last carry. The caller sets train/eval mode
// and grad mode.
Carry run_to_halt(ACTModel& model, const Batch& batch,
                  const std::function<void(int64_t segment, const Carry& carry, const ACTOutputs& out)>& each);

}  // namespace hrm
