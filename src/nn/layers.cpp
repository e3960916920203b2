#include "hrm/nn/layers.h"

#include <algorithm>

#include "hrm/nn/fused.h"

#include <cmath>

namespace hrm::nn {

torch::Tensor& trunc_normal_(torch::Tensor& tensor, double std, double lower, double upper) {
  torch::NoGradGuard no_grad;
  if (std == 0) return tensor.zero_();
  // Inverse-CDF sampling of the standard normal restricted to [lower, upper], then rescaled so that the truncated
  // distribution has standard deviation `std` (variance of a truncated standard normal: 1 + (a p(a) - b p(b))/Z -
  // ((p(a) - p(b))/Z)^2, with Z = Phi(b) - Phi(a)).
  const double sqrt2 = std::sqrt(2.0);
  const double a = std::erf(lower / sqrt2), b = std::erf(upper / sqrt2);
  const double z = (b - a) / 2;
  const double c = 1.0 / std::sqrt(2 * M_PI);
  const double pdf_lower = c * std::exp(-0.5 * lower * lower), pdf_upper = c * std::exp(-0.5 * upper * upper);
  const double var = 1 + (lower * pdf_lower - upper * pdf_upper) / z - std::pow((pdf_lower - pdf_upper) / z, 2);
  const double scaled_std = std / std::sqrt(var);
  tensor.uniform_(a, b);
  tensor.erfinv_();
  tensor.mul_(sqrt2 * scaled_std);
  tensor.clamp_(lower * scaled_std, upper * scaled_std);
  return tensor;
}

torch::Tensor rms_norm(const torch::Tensor& x, double eps) {
  const auto dtype = x.scalar_type();
  const torch::Tensor h = x.to(torch::kFloat);
  const torch::Tensor variance = h.square().mean(-1, /*keepdim=*/true);
  return (h * torch::rsqrt(variance + eps)).to(dtype);
}

// ------------------------------------------------------------------ CastedLinear
CastedLinearImpl::CastedLinearImpl(int64_t in_features, int64_t out_features, bool with_bias) {
  torch::Tensor w = torch::empty({out_features, in_features});
  weight = register_parameter("weight", trunc_normal_(w, 1.0 / std::sqrt(static_cast<double>(in_features))));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

torch::Tensor CastedLinearImpl::cast_weight(c10::ScalarType dtype) const {
  return weight_cast_.defined() ? weight_cast_ : weight.to(dtype);
}

torch::Tensor CastedLinearImpl::forward(const torch::Tensor& x) {
  const torch::Tensor w = cast_weight(x.scalar_type());
  if (!bias.defined()) return hrm::nn::linear(x, w);
  const torch::Tensor& b = bias_cast_.defined() ? bias_cast_ : bias.to(x.scalar_type());
  return hrm::nn::linear(x, w, b);
}

void CastedLinearImpl::cast_weights(c10::ScalarType dtype) {
  weight_cast_ = weight.to(dtype);
  if (bias.defined()) bias_cast_ = bias.to(dtype);
}

void CastedLinearImpl::release_cast() {
  weight_cast_ = torch::Tensor();
  bias_cast_ = torch::Tensor();
}

// ------------------------------------------------------------------ CastedEmbedding
CastedEmbeddingImpl::CastedEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim, double init_std,
                                         c10::ScalarType cast_to)
    : cast_to_(cast_to) {
  torch::Tensor w = torch::empty({num_embeddings, embedding_dim});
  embedding_weight = register_parameter("embedding_weight", trunc_normal_(w, init_std));
}

torch::Tensor CastedEmbeddingImpl::weight_in_forward_dtype() {
  return weight_cast_.defined() ? weight_cast_ : embedding_weight.to(cast_to_);
}

torch::Tensor CastedEmbeddingImpl::forward(const torch::Tensor& ids) {
  return torch::embedding(weight_in_forward_dtype(), ids.to(torch::kLong));
}

void CastedEmbeddingImpl::cast_weights() { weight_cast_ = embedding_weight.to(cast_to_); }
void CastedEmbeddingImpl::release_cast() { weight_cast_ = torch::Tensor(); }

// ------------------------------------------------------------------ RoPE
RotaryEmbedding::RotaryEmbedding(int64_t head_dim, int64_t max_positions, double base) {
  const torch::Tensor inv_freq =
      1.0 / torch::pow(base, torch::arange(0, head_dim, 2, torch::kFloat) / static_cast<double>(head_dim));
  const torch::Tensor t = torch::arange(max_positions, torch::kFloat);
  const torch::Tensor freqs = torch::outer(t, inv_freq);
  const torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  cos_ = cos_dev_ = emb.cos();
  sin_ = sin_dev_ = emb.sin();
}

std::pair<torch::Tensor, torch::Tensor> RotaryEmbedding::tables(const torch::Device& device) {
  if (cos_dev_.device() != device) {
    cos_dev_ = cos_.to(device);
    sin_dev_ = sin_.to(device);
  }
  return {cos_dev_, sin_dev_};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  // x*cos + rotate_half(x)*sin with rotate_half(x) = [-x2, x1] and cos = [c, c], sin = [s, s] per half:
  // [x1*c - x2*s, x2*c + x1*s] -- the same IEEE operations without materialising rotate_half.
  const auto dtype = x.scalar_type();
  const torch::Tensor xf = x.to(cos.scalar_type());
  const int64_t half = xf.size(-1) / 2;
  const torch::Tensor x1 = xf.narrow(-1, 0, half), x2 = xf.narrow(-1, half, half);
  const torch::Tensor c = cos.narrow(-1, 0, half).unsqueeze(-2), s = sin.narrow(-1, 0, half).unsqueeze(-2);
  return torch::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1).to(dtype);
}

// ------------------------------------------------------------------ Attention
AttentionImpl::AttentionImpl(int64_t hidden_size, int64_t num_heads)
    : num_heads_(num_heads), head_dim_(hidden_size / num_heads) {
  qkv_proj = register_module("qkv_proj", CastedLinear(hidden_size, 3 * num_heads * head_dim_, false));
  o_proj = register_module("o_proj", CastedLinear(num_heads * head_dim_, hidden_size, false));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope) {
  const int64_t B = x.size(0), S = x.size(1);
  const torch::Tensor qkv = qkv_proj(x).view({B, S, 3 * num_heads_, head_dim_});
  return o_proj(attention(qkv, num_heads_, rope));
}

// ------------------------------------------------------------------ SwiGLU
SwiGLUImpl::SwiGLUImpl(int64_t hidden_size, int64_t intermediate_size) {
  gate_up_proj = register_module("gate_up_proj", CastedLinear(hidden_size, 2 * intermediate_size, false));
  down_proj = register_module("down_proj", CastedLinear(intermediate_size, hidden_size, false));
}

torch::Tensor SwiGLUImpl::forward(const torch::Tensor& x) {
  // swiglu(gate_up_proj(x)), in one pass where the kernels allow (nn::linear_swiglu)
  return down_proj(linear_swiglu(x, gate_up_proj->cast_weight(x.scalar_type())));
}

// ------------------------------------------------------------------ Block
TransformerBlockImpl::TransformerBlockImpl(int64_t hidden_size, int64_t num_heads, int64_t intermediate_size,
                                           double norm_eps, int64_t sequence_len, int64_t sequence_intermediate)
    : norm_eps_(norm_eps) {
  if (sequence_len > 0)
    mlp_t = register_module("mlp_t", SwiGLU(sequence_len, sequence_intermediate));
  else
    self_attn = register_module("self_attn", Attention(hidden_size, num_heads));
  mlp = register_module("mlp", SwiGLU(hidden_size, intermediate_size));
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x, const RopeTables& rope) {
  torch::Tensor h;
  if (mlp_t) {
    // Mix along the sequence: [B, S, D] -> [B, D, S], SwiGLU + residual + RMSNorm over S, and back. Transposed
    // views, not copies, as the reference: the residual sum then keeps x's memory order, and the norm's reduction
    // runs in the reference's order (contiguous copies change the float32 result in the last bits).
    const torch::Tensor t = x.transpose(1, 2);
    h = add_rms_norm(t, mlp_t(t), norm_eps_).transpose(1, 2);
  } else {
    // (the dot-product route checked first: where the one pass cannot run, no weight is cast twice)
    if (x.scalar_type() == torch::kBFloat16 && !torch::GradMode::is_enabled() && bf16_products_on_dot_kernels()) {
      const auto dtype = x.scalar_type();
      const BlockWeights w{self_attn->qkv_proj->cast_weight(dtype), self_attn->o_proj->cast_weight(dtype),
                           mlp->gate_up_proj->cast_weight(dtype), mlp->down_proj->cast_weight(dtype)};
      torch::Tensor y = transformer_block_in_one_pass(x, w, self_attn->num_heads(), rope, norm_eps_);
      if (y.defined()) return y;
    }
    h = add_rms_norm(x, self_attn(x, rope), norm_eps_);
  }
  return add_rms_norm(h, mlp(h), norm_eps_);
}

torch::Tensor attention_ops(const torch::Tensor& qkv, int64_t num_heads, const RopeTables& rope) {
  const int64_t B = qkv.size(0), S = qkv.size(1), D = qkv.size(3), H = num_heads;
  const bool rotate = rope.cos.defined();
  torch::Tensor qk = qkv.narrow(2, 0, 2 * H);  // queries and keys rotate together
  if (rotate) qk = apply_rotary(qk, rope.cos.narrow(0, 0, S), rope.sin.narrow(0, 0, S));
  // [B, heads, S, head_dim]
  const torch::Tensor q = qk.narrow(2, 0, H).transpose(1, 2), k = qk.narrow(2, H, H).transpose(1, 2);
  const torch::Tensor v = qkv.narrow(2, 2 * H, H).transpose(1, 2);
#if TORCH_VERSION_MAJOR >= 2
  const torch::Tensor attn = at::scaled_dot_product_attention(q, k, v);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  // Without a graph, long sequences (ARC: 900 tokens) take a few (batch, head) pairs at a time, so that no score
  // matrix exceeds kScoreBytes: a [B, heads, S, S] temporary above glibc's 32 MiB mmap ceiling is a fresh mapping
  // that the kernel zero-fills page by page at every call. Each pair is computed as in the batched product.
  constexpr int64_t kScoreBytes = 8 << 20;
  const int64_t pair_bytes = S * S * static_cast<int64_t>(qkv.element_size());
  if (!torch::GradMode::is_enabled() && B * H * pair_bytes > kScoreBytes) {
    const int64_t heads_per_chunk = std::clamp<int64_t>(kScoreBytes / pair_bytes, 1, H);
    torch::Tensor out = torch::empty({B, S, H, D}, qkv.options());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h0 = 0; h0 < H; h0 += heads_per_chunk) {
        const int64_t n = std::min(heads_per_chunk, H - h0);
        const torch::Tensor qc = q.select(0, b).narrow(0, h0, n), kc = k.select(0, b).narrow(0, h0, n);
        const torch::Tensor vc = v.select(0, b).narrow(0, h0, n);
        const torch::Tensor part =
            hrm::nn::matmul(torch::softmax(hrm::nn::matmul(qc, kc.transpose(-2, -1)) * scale, -1), vc);
        out.select(0, b).narrow(1, h0, n).copy_(part.transpose(0, 1));
      }
    return out.view({B, S, H * D});
  }
  const torch::Tensor attn = hrm::nn::matmul(torch::softmax(hrm::nn::matmul(q, k.transpose(-2, -1)) * scale, -1), v);
#endif
  return attn.transpose(1, 2).reshape({B, S, H * D});
}

torch::Tensor swiglu_ops(const torch::Tensor& gate_up) {
  const auto parts = gate_up.chunk(2, -1);
  return torch::silu(parts[0]) * parts[1];
}

}  // namespace hrm::nn
