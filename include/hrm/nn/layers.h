#pragma once
// Building blocks of HRM, numerically as in the published implementation (models/layers.py).
// Weights are float32 masters; "Casted" layers compute in the forward dtype (bfloat16 by default).
#include <torch/torch.h>

namespace hrm::nn {

// JAX-style truncated normal (flax's default): N(0, s) truncated to [lower*s, upper*s] where s is chosen so that the
// *resulting* standard deviation is `std` (torch's trunc_normal_ does not correct for the truncation).
torch::Tensor& trunc_normal_(torch::Tensor& tensor, double std, double lower = -2.0, double upper = 2.0);

// RMSNorm without weights, computed in float32 and returned in the input dtype.
torch::Tensor rms_norm(const torch::Tensor& x, double eps);

// Linear layer without (or with zero-init) bias and truncated LeCun-normal weights.
// cast_weights() makes the forward-dtype copy once (per optimizer step) instead of once per call: inside one
// segment each weight is used H_cycles*L_cycles times.
class CastedLinearImpl : public torch::nn::Module {
 public:
  CastedLinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor cast_weight(c10::ScalarType dtype) const;  // the weight in dtype (the cached cast, if any)
  void cast_weights(c10::ScalarType dtype);
  void release_cast();

  torch::Tensor weight;  // [out, in], float32
  torch::Tensor bias;    // [out] or undefined

 private:
  torch::Tensor weight_cast_, bias_cast_;
};
TORCH_MODULE(CastedLinear);

// Embedding table with truncated-normal init, looked up in the forward dtype.
class CastedEmbeddingImpl : public torch::nn::Module {
 public:
  CastedEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim, double init_std, c10::ScalarType cast_to);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight_in_forward_dtype();
  void cast_weights();
  void release_cast();

  torch::Tensor embedding_weight;  // [num, dim], float32

 private:
  c10::ScalarType cast_to_;
  torch::Tensor weight_cast_;
};
TORCH_MODULE(CastedEmbedding);

// Rotary position encoding tables (float32, [positions, head_dim], the "cat(freqs, freqs)" layout).
class RotaryEmbedding {
 public:
  RotaryEmbedding() = default;
  RotaryEmbedding(int64_t head_dim, int64_t max_positions, double base);
  bool defined() const { return cos_.defined(); }
  // The tables on `device` (copied once per device).
  std::pair<torch::Tensor, torch::Tensor> tables(const torch::Device& device);

 private:
  torch::Tensor cos_, sin_;
  torch::Tensor cos_dev_, sin_dev_;
};

// q, k: [batch, seq, heads, head_dim]; rotated in float32 and returned in their own dtype.
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

struct RopeTables {
  torch::Tensor cos, sin;  // undefined when positions are learned
};

// Non-causal multi-head self-attention with a fused QKV projection.
// The published op chains of attention (softmax(QK^T/sqrt(d))V with RoPE on q and k; SDPA on LibTorch >= 2) and of
// SwiGLU (silu(gate) * up), as LibTorch ops. nn/fused.h runs fused kernels instead where they apply.
torch::Tensor attention_ops(const torch::Tensor& qkv, int64_t num_heads, const RopeTables& rope);
torch::Tensor swiglu_ops(const torch::Tensor& gate_up);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t hidden_size, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope);
  int64_t num_heads() const { return num_heads_; }

  CastedLinear qkv_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t num_heads_, head_dim_;
};
TORCH_MODULE(Attention);

// SwiGLU MLP; intermediate size = round(expansion*hidden*2/3) rounded up to a multiple of 256.
class SwiGLUImpl : public torch::nn::Module {
 public:
  SwiGLUImpl(int64_t hidden_size, int64_t intermediate_size);
  torch::Tensor forward(const torch::Tensor& x);

  CastedLinear gate_up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(SwiGLU);

// Post-norm Transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x)).
class TransformerBlockImpl : public torch::nn::Module {
 public:
  // sequence_len > 0: the token mixer is `mlp_t`, a SwiGLU across the sequence (width sequence_intermediate) with
  // its residual and RMSNorm over the sequence axis (TRM's mlp_t), instead of self-attention.
  TransformerBlockImpl(int64_t hidden_size, int64_t num_heads, int64_t intermediate_size, double norm_eps,
                       int64_t sequence_len = 0, int64_t sequence_intermediate = 0);
  torch::Tensor forward(const torch::Tensor& x, const RopeTables& rope);

  Attention self_attn{nullptr};  // null with mlp_t
  SwiGLU mlp_t{nullptr};         // null with self-attention
  SwiGLU mlp{nullptr};

 private:
  double norm_eps_;
};
TORCH_MODULE(TransformerBlock);

}  // namespace hrm::nn
