#pragma once
// The model family's interface. Every model (HRM today) is a ReasoningCore: what runs inside one ACT segment, on
// a carried recurrent state. The ACT wrapper (model/act.h), the losses, the trainer, evaluation and `solve` only see
// this interface; each model is one file implementing it plus one line in model/registry.cpp.
//
// The base class owns what the published models share, built in the published order so that a seed gives the
// published initial weights: token embedding, output heads (lm_head, q_head), the sparse puzzle embedding and the
// position encoding (RoPE or learned). Names follow the published state dicts ("inner.lm_head.weight").
#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "hrm/config/model_config.h"
#include "hrm/data/batch.h"
#include "hrm/nn/layers.h"
#include "hrm/nn/puzzle_embedding.h"

namespace hrm {

// The recurrent state carried from one segment to the next: [B, puzzle_emb_len + seq_len, hidden], forward dtype,
// no grad. Models with one state use z_H and leave z_L undefined.
struct InnerCarry {
  torch::Tensor z_H, z_L;
};

struct SegmentOutput {
  InnerCarry carry;                                // detached
  torch::Tensor logits;                            // [B, seq_len, vocab], forward dtype
  torch::Tensor q_halt_logits, q_continue_logits;  // [B] float32
};

// When the Q head halts a sample, and whether a Q-continue target is bootstrapped; the two are independent.
enum class HaltRule {
  QHaltAboveQContinue,  // q_halt > q_continue (HRM, the Transformer baseline)
  QHaltPositive,        // q_halt > 0 (TRM, HRM with no_ACT_continue)
};
struct HaltingPolicy {
  HaltRule rule = HaltRule::QHaltAboveQContinue;
  bool target_q = true;              // Q_continue target from one more no-grad segment, and its loss (HRM)
  bool adaptive_in_training = true;  // the rule halts while training (else every sample runs halt_max_steps)
  bool adaptive_at_eval = false;     // the rule also halts at evaluation (else every sample runs halt_max_steps)
  bool halts(double q_halt, double q_continue) const {
    return rule == HaltRule::QHaltPositive ? q_halt > 0 : q_halt > q_continue;
  }
};

// A stack of the config's blocks (H or L of HRM, L of TRM, H of the Transformer baseline); the input injection is
// added to the state first. With mlp_t each block mixes along the sequence instead of attending.
class ReasoningModuleImpl : public torch::nn::Module {
 public:
  ReasoningModuleImpl(const ModelConfig& config, int64_t num_layers);
  torch::Tensor forward(const torch::Tensor& state, const torch::Tensor& injection, const nn::RopeTables& rope);

  torch::nn::ModuleList layers;
};
TORCH_MODULE(ReasoningModule);

class ReasoningCore : public torch::nn::Module {
 public:
  // A carry for batch_size samples (zeros: every sample starts halted, so it is replaced before use).
  virtual InnerCarry empty_carry(int64_t batch_size) = 0;
  // Samples where `reset` is true restart from the model's initial state.
  virtual InnerCarry reset_carry(const torch::Tensor& reset, const InnerCarry& carry) = 0;
  // One segment: the recursion on the carried state, then the output heads.
  virtual SegmentOutput forward(const InnerCarry& carry, const Batch& batch) = 0;
  virtual HaltingPolicy halting() const = 0;

  // Forward-dtype copies of every weight, made once per ACT forward (with autograd, so gradients reach the float32
  // masters) and reused by every module call of the segment and by the target-Q forward.
  void cast_weights();
  void release_cast_weights();

  const ModelConfig& config() const { return config_; }
  torch::Device device() const { return embed_tokens->embedding_weight.device(); }

  nn::CastedEmbedding embed_tokens{nullptr};
  nn::CastedLinear lm_head{nullptr}, q_head{nullptr};
  nn::SparsePuzzleEmbedding puzzle_emb{nullptr};  // null when puzzle_emb_ndim == 0
  nn::CastedEmbedding embed_pos{nullptr};         // null unless pos_encodings == "learned"

  // When set, called with every state update inside a segment ("z_L" or "z_H" and the new state), in order: the
  // analyses (forward residuals, participation ratio) watch the recursion through it.
  std::function<void(const char* state, const torch::Tensor& value)> observer;

  // sqrt(hidden) * [puzzle embedding prefix ; token embedding] (+ learned positions), forward dtype.
  torch::Tensor input_embeddings(const Batch& batch);
  nn::RopeTables rope_tables(const torch::Device& device);

 protected:
  explicit ReasoningCore(const ModelConfig& config);

  // A trunc-normal(1) initial state [hidden] in the forward dtype, registered as buffer `name` (H_init, L_init).
  torch::Tensor register_initial_state(const std::string& name);
  // Zeros shaped like the states `inits` has (every sample starts halted, so they are replaced before use), and
  // the carry with halted samples reset to `inits` (a model with one state leaves inits.z_L undefined).
  InnerCarry zero_carry(int64_t batch_size, const InnerCarry& inits) const;
  static InnerCarry reset_to(const torch::Tensor& reset, const InnerCarry& carry, const InnerCarry& inits);

  // lm_head on the sequence positions and q_head on the first position of the final state; carry = states detached.
  SegmentOutput output_heads(const torch::Tensor& z_final, InnerCarry carry);
  // `value`, after telling the observer (if any) that `state` became it.
  const torch::Tensor& observed(const char* state, const torch::Tensor& value) {
    if (observer) observer(state, value);
    return value;
  }

  ModelConfig config_;

 private:
  nn::RotaryEmbedding rotary_;
};

}  // namespace hrm
