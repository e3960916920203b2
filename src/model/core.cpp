#include "hrm/model/core.h"

#include <cmath>

namespace hrm {

ReasoningModuleImpl::ReasoningModuleImpl(const ModelConfig& config, int64_t num_layers) {
  layers = register_module("layers", torch::nn::ModuleList());
  const int64_t S = config.mlp_t ? config.total_seq_len() : 0;
  for (int64_t i = 0; i < num_layers; ++i)
    layers->push_back(nn::TransformerBlock(config.hidden_size, config.num_heads, config.mlp_intermediate(),
                                           config.rms_norm_eps, S, S ? config.mlp_intermediate(S) : 0));
}

torch::Tensor ReasoningModuleImpl::forward(const torch::Tensor& state, const torch::Tensor& injection,
                                           const nn::RopeTables& rope) {
  torch::Tensor h = state + injection;
  for (const auto& layer : *layers) h = layer->as<nn::TransformerBlock>()->forward(h, rope);
  return h;
}

ReasoningCore::ReasoningCore(const ModelConfig& config) : config_(config) {
  config_.validate();
  const auto dtype = config_.dtype();
  const double embed_std = 1.0 / std::sqrt(static_cast<double>(config_.hidden_size));

  embed_tokens =
      register_module("embed_tokens", nn::CastedEmbedding(config_.vocab_size, config_.hidden_size, embed_std, dtype));
  lm_head = register_module("lm_head", nn::CastedLinear(config_.hidden_size, config_.vocab_size, false));
  q_head = register_module("q_head", nn::CastedLinear(config_.hidden_size, 2, true));
  if (config_.puzzle_emb_ndim > 0)
    puzzle_emb = register_module(
        "puzzle_emb", nn::SparsePuzzleEmbedding(config_.num_puzzle_identifiers, config_.puzzle_emb_ndim, dtype));
  if (config_.pos_encodings == "rope")
    rotary_ = nn::RotaryEmbedding(config_.head_dim(), config_.total_seq_len(), config_.rope_theta);
  else if (config_.pos_encodings == "learned")
    embed_pos = register_module("embed_pos",
                                nn::CastedEmbedding(config_.total_seq_len(), config_.hidden_size, embed_std, dtype));

  // Q head starts near "never halt" (q ~ sigmoid(-5)) for stable bootstrapping.
  torch::NoGradGuard no_grad;
  q_head->weight.zero_();
  q_head->bias.fill_(-5);
}

torch::Tensor ReasoningCore::register_initial_state(const std::string& name) {
  torch::Tensor init = torch::empty({config_.hidden_size}, torch::TensorOptions().dtype(config_.dtype()));
  return register_buffer(name, nn::trunc_normal_(init, 1.0));
}

InnerCarry ReasoningCore::zero_carry(int64_t batch_size, const InnerCarry& inits) const {
  auto zeros = [&](const torch::Tensor& like) {
    return like.defined() ? torch::zeros({batch_size, config_.total_seq_len(), config_.hidden_size}, like.options())
                          : torch::Tensor();
  };
  return InnerCarry{zeros(inits.z_H), zeros(inits.z_L)};
}

InnerCarry ReasoningCore::reset_to(const torch::Tensor& reset, const InnerCarry& carry, const InnerCarry& inits) {
  const torch::Tensor r = reset.view({-1, 1, 1});
  auto pick = [&](const torch::Tensor& init, const torch::Tensor& state) {
    return init.defined() ? torch::where(r, init, state) : torch::Tensor();
  };
  return InnerCarry{pick(inits.z_H, carry.z_H), pick(inits.z_L, carry.z_L)};
}

nn::RopeTables ReasoningCore::rope_tables(const torch::Device& device) {
  if (!rotary_.defined()) return {};
  auto [cos, sin] = rotary_.tables(device);
  return {cos, sin};
}

torch::Tensor ReasoningCore::input_embeddings(const Batch& batch) {
  const int64_t H = config_.hidden_size;
  torch::Tensor embedding = embed_tokens(batch.inputs);
  if (config_.puzzle_emb_ndim > 0) {
    torch::Tensor pe = puzzle_emb(batch.puzzle_identifiers);
    const int64_t pad = config_.prefix_len() * H - pe.size(-1);
    if (pad > 0) pe = torch::constant_pad_nd(pe, {0, pad});
    embedding = torch::cat({pe.view({-1, config_.prefix_len(), H}), embedding}, -2);
  }
  if (embed_pos) embedding = 0.707106781 * (embedding + embed_pos->weight_in_forward_dtype());
  return std::sqrt(static_cast<double>(H)) * embedding;
}

SegmentOutput ReasoningCore::output_heads(const torch::Tensor& z_final, InnerCarry carry) {
  SegmentOutput out;
  out.carry = std::move(carry);
  out.logits = lm_head(z_final.narrow(1, config_.prefix_len(), config_.seq_len));
  const torch::Tensor q = q_head(z_final.select(1, 0)).to(torch::kFloat);
  out.q_halt_logits = q.select(-1, 0);
  out.q_continue_logits = q.select(-1, 1);
  return out;
}

void ReasoningCore::cast_weights() {
  const auto dtype = config_.dtype();
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* linear = m->as<nn::CastedLinearImpl>())
      linear->cast_weights(dtype);
    else if (auto* emb = m->as<nn::CastedEmbeddingImpl>())
      emb->cast_weights();
  }
}

void ReasoningCore::release_cast_weights() {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* linear = m->as<nn::CastedLinearImpl>())
      linear->release_cast();
    else if (auto* emb = m->as<nn::CastedEmbeddingImpl>())
      emb->release_cast();
  }
}

}  // namespace hrm
