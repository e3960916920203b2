#pragma once
// The Hierarchical Reasoning Model: a slow high-level module H and a fast low-level module L, one segment =
// N = H_cycles high-level cycles of T = L_cycles low-level steps, trained with the one-step gradient; and the ACT
// wrapper that runs segments with a carried state and a Q-learning halting head.
#include <torch/torch.h>

#include "hrm/config/model_config.h"
#include "hrm/nn/layers.h"

namespace hrm {

// One batch of puzzles. inputs/labels: [B, seq_len] integer tokens (labels -100 = ignored); puzzle_identifiers: [B].
struct Batch {
  torch::Tensor inputs, labels, puzzle_identifiers;
  int64_t size() const { return inputs.size(0); }
  Batch to(const torch::Device& device) const;
};

struct InnerCarry {
  torch::Tensor z_H, z_L;  // [B, puzzle_emb_len + seq_len, hidden], forward dtype, no grad
};

// Per-sample state carried across segments (and across training batches).
struct Carry {
  InnerCarry inner;
  torch::Tensor steps;   // int32 [B]: segments run for the current puzzle
  torch::Tensor halted;  // bool [B]: halted samples are replaced by the next batch's data
  Batch current;         // the data each sample is working on
};

struct ACTOutputs {
  torch::Tensor logits;             // [B, seq_len, vocab], forward dtype
  torch::Tensor q_halt_logits;      // [B] float32
  torch::Tensor q_continue_logits;  // [B] float32
  torch::Tensor target_q_continue;  // [B] float32; only in training with ACT and the continue head
};

// Puzzle embedding trained sparsely: the table is a buffer; a training forward copies the batch's rows into a fresh
// leaf tensor (`local_weights`) whose gradient SparseSignSGD applies to those rows only.
class SparsePuzzleEmbeddingImpl : public torch::nn::Module {
 public:
  SparsePuzzleEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim, c10::ScalarType cast_to);
  torch::Tensor forward(const torch::Tensor& ids);

  torch::Tensor weights;        // [num, dim] float32 (zero init)
  torch::Tensor local_weights;  // [B, dim] leaf of the last training forward with grad enabled
  torch::Tensor local_ids;      // [B] ids of those rows

 private:
  c10::ScalarType cast_to_;
};
TORCH_MODULE(SparsePuzzleEmbedding);

// H or L: a stack of Transformer blocks; the input injection is added to the state first.
class ReasoningModuleImpl : public torch::nn::Module {
 public:
  ReasoningModuleImpl(const ModelConfig& config, int64_t num_layers);
  torch::Tensor forward(const torch::Tensor& state, const torch::Tensor& injection, const nn::RopeTables& rope);

  torch::nn::ModuleList layers;
};
TORCH_MODULE(ReasoningModule);

struct SegmentOutput {
  InnerCarry carry;  // detached
  torch::Tensor logits, q_halt_logits, q_continue_logits;
};

// One segment of HRM (the published `HierarchicalReasoningModel_ACTV1_Inner`).
class HRMInnerImpl : public torch::nn::Module {
 public:
  explicit HRMInnerImpl(const ModelConfig& config);

  SegmentOutput forward(const InnerCarry& carry, const Batch& batch);
  torch::Tensor input_embeddings(const Batch& batch);

  InnerCarry empty_carry(int64_t batch_size);
  InnerCarry reset_carry(const torch::Tensor& reset, const InnerCarry& carry);

  // Forward-dtype copies of every weight, made once per segment (with autograd, so gradients reach the float32
  // masters) and reused by all H_cycles*L_cycles module calls and by the target-Q forward.
  void cast_weights();
  void release_cast_weights();

  const ModelConfig& config() const { return config_; }

  nn::CastedEmbedding embed_tokens{nullptr};
  nn::CastedLinear lm_head{nullptr}, q_head{nullptr};
  SparsePuzzleEmbedding puzzle_emb{nullptr};  // null when puzzle_emb_ndim == 0
  nn::CastedEmbedding embed_pos{nullptr};     // null unless pos_encodings == "learned"
  ReasoningModule H_level{nullptr}, L_level{nullptr};
  torch::Tensor H_init, L_init;               // [hidden] initial states, forward dtype (buffers)

 private:
  nn::RopeTables rope_tables(const torch::Device& device);

  ModelConfig config_;
  nn::RotaryEmbedding rotary_;
};
TORCH_MODULE(HRMInner);

// The full model: HRM with adaptive computation time (the published `HierarchicalReasoningModel_ACTV1`).
class HRMImpl : public torch::nn::Module {
 public:
  explicit HRMImpl(const ModelConfig& config);

  // A carry with every sample halted, so the first forward loads the batch.
  Carry initial_carry(const Batch& batch);
  // One ACT segment: resets halted samples, runs the inner model, decides halting.
  std::pair<Carry, ACTOutputs> forward(const Carry& carry, const Batch& batch);

  const ModelConfig& config() const { return inner->config(); }
  torch::Device device() const { return inner->H_init.device(); }

  HRMInner inner{nullptr};
};
TORCH_MODULE(HRM);

}  // namespace hrm
