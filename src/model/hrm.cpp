#include "hrm/model/hrm.h"

#include <cmath>

#include "hrm/util/error.h"

namespace hrm {

Batch Batch::to(const torch::Device& device) const {
  return Batch{inputs.to(device), labels.to(device), puzzle_identifiers.to(device)};
}

// ------------------------------------------------------------------ puzzle embedding
SparsePuzzleEmbeddingImpl::SparsePuzzleEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim,
                                                     c10::ScalarType cast_to)
    : cast_to_(cast_to) {
  weights = register_buffer("weights", torch::zeros({num_embeddings, embedding_dim}));
}

torch::Tensor SparsePuzzleEmbeddingImpl::forward(const torch::Tensor& ids) {
  const torch::Tensor idx = ids.to(torch::kLong);
  if (!is_training() || !torch::GradMode::is_enabled()) return weights.index_select(0, idx).to(cast_to_);
  local_ids = idx;
  local_weights = weights.index_select(0, idx).detach().requires_grad_(true);
  return local_weights.to(cast_to_);
}

// ------------------------------------------------------------------ H / L modules
ReasoningModuleImpl::ReasoningModuleImpl(const ModelConfig& config, int64_t num_layers) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i)
    layers->push_back(nn::TransformerBlock(config.hidden_size, config.num_heads, config.mlp_intermediate(),
                                           config.rms_norm_eps));
}

torch::Tensor ReasoningModuleImpl::forward(const torch::Tensor& state, const torch::Tensor& injection,
                                           const nn::RopeTables& rope) {
  torch::Tensor h = state + injection;
  for (const auto& layer : *layers) h = layer->as<nn::TransformerBlock>()->forward(h, rope);
  return h;
}

// ------------------------------------------------------------------ one segment
HRMInnerImpl::HRMInnerImpl(const ModelConfig& config) : config_(config) {
  config_.validate();
  const auto dtype = config_.dtype();
  const double embed_std = 1.0 / std::sqrt(static_cast<double>(config_.hidden_size));

  embed_tokens = register_module("embed_tokens",
                                 nn::CastedEmbedding(config_.vocab_size, config_.hidden_size, embed_std, dtype));
  lm_head = register_module("lm_head", nn::CastedLinear(config_.hidden_size, config_.vocab_size, false));
  q_head = register_module("q_head", nn::CastedLinear(config_.hidden_size, 2, true));
  if (config_.puzzle_emb_ndim > 0)
    puzzle_emb = register_module("puzzle_emb", SparsePuzzleEmbedding(config_.num_puzzle_identifiers,
                                                                     config_.puzzle_emb_ndim, dtype));
  if (config_.pos_encodings == "rope")
    rotary_ = nn::RotaryEmbedding(config_.head_dim(), config_.total_seq_len(), config_.rope_theta);
  else
    embed_pos = register_module("embed_pos",
                                nn::CastedEmbedding(config_.total_seq_len(), config_.hidden_size, embed_std, dtype));
  H_level = register_module("H_level", ReasoningModule(config_, config_.H_layers));
  L_level = register_module("L_level", ReasoningModule(config_, config_.L_layers));

  torch::Tensor h0 = torch::empty({config_.hidden_size}, torch::TensorOptions().dtype(dtype));
  torch::Tensor l0 = torch::empty({config_.hidden_size}, torch::TensorOptions().dtype(dtype));
  H_init = register_buffer("H_init", nn::trunc_normal_(h0, 1.0));
  L_init = register_buffer("L_init", nn::trunc_normal_(l0, 1.0));

  // Q head starts near "never halt" (q ~ sigmoid(-5)) for stable bootstrapping.
  torch::NoGradGuard no_grad;
  q_head->weight.zero_();
  q_head->bias.fill_(-5);
}

nn::RopeTables HRMInnerImpl::rope_tables(const torch::Device& device) {
  if (!rotary_.defined()) return {};
  auto [cos, sin] = rotary_.tables(device);
  return {cos, sin};
}

torch::Tensor HRMInnerImpl::input_embeddings(const Batch& batch) {
  const int64_t H = config_.hidden_size;
  torch::Tensor embedding = embed_tokens(batch.inputs);
  if (config_.puzzle_emb_ndim > 0) {
    torch::Tensor pe = puzzle_emb(batch.puzzle_identifiers);
    const int64_t pad = config_.puzzle_emb_len() * H - pe.size(-1);
    if (pad > 0) pe = torch::constant_pad_nd(pe, {0, pad});
    embedding = torch::cat({pe.view({-1, config_.puzzle_emb_len(), H}), embedding}, -2);
  }
  if (embed_pos) embedding = 0.707106781 * (embedding + embed_pos->weight_in_forward_dtype());
  return std::sqrt(static_cast<double>(H)) * embedding;
}

SegmentOutput HRMInnerImpl::forward(const InnerCarry& carry, const Batch& batch) {
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
        z_L = L_level(z_L, z_H + x, rope);
      }
      if (h < N - 1) z_H = H_level(z_H, z_L, rope);
    }
  }
  // One-step gradient: the last L and H updates.
  z_L = L_level(z_L, z_H + x, rope);
  z_H = H_level(z_H, z_L, rope);

  SegmentOutput out;
  out.carry = InnerCarry{z_H.detach(), z_L.detach()};
  out.logits = lm_head(z_H.narrow(1, config_.puzzle_emb_len(), config_.seq_len));
  const torch::Tensor q = q_head(z_H.select(1, 0)).to(torch::kFloat);
  out.q_halt_logits = q.select(-1, 0);
  out.q_continue_logits = q.select(-1, 1);
  return out;
}

InnerCarry HRMInnerImpl::empty_carry(int64_t batch_size) {
  const auto opts = H_init.options();
  return InnerCarry{torch::zeros({batch_size, config_.total_seq_len(), config_.hidden_size}, opts),
                    torch::zeros({batch_size, config_.total_seq_len(), config_.hidden_size}, opts)};
}

InnerCarry HRMInnerImpl::reset_carry(const torch::Tensor& reset, const InnerCarry& carry) {
  const torch::Tensor r = reset.view({-1, 1, 1});
  return InnerCarry{torch::where(r, H_init, carry.z_H), torch::where(r, L_init, carry.z_L)};
}

void HRMInnerImpl::cast_weights() {
  const auto dtype = config_.dtype();
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* linear = m->as<nn::CastedLinearImpl>()) linear->cast_weights(dtype);
    else if (auto* emb = m->as<nn::CastedEmbeddingImpl>()) emb->cast_weights();
  }
}

void HRMInnerImpl::release_cast_weights() {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* linear = m->as<nn::CastedLinearImpl>()) linear->release_cast();
    else if (auto* emb = m->as<nn::CastedEmbeddingImpl>()) emb->release_cast();
  }
}

// ------------------------------------------------------------------ ACT wrapper
HRMImpl::HRMImpl(const ModelConfig& config) { inner = register_module("inner", HRMInner(config)); }

Carry HRMImpl::initial_carry(const Batch& batch) {
  const int64_t B = batch.size();
  const auto dev = device();
  Carry c;
  c.inner = inner->empty_carry(B);
  c.steps = torch::zeros({B}, torch::TensorOptions().dtype(torch::kInt).device(dev));
  c.halted = torch::ones({B}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  c.current = Batch{torch::zeros_like(batch.inputs, dev), torch::zeros_like(batch.labels, dev),
                    torch::zeros_like(batch.puzzle_identifiers, dev)};
  return c;
}

namespace {
torch::Tensor select_rows(const torch::Tensor& halted, const torch::Tensor& fresh, const torch::Tensor& old) {
  std::vector<int64_t> shape(static_cast<size_t>(fresh.dim()), 1);
  shape[0] = -1;
  return torch::where(halted.view(shape), fresh, old);
}

// Cast copies live for one ACT forward: the graph keeps what backward needs.
struct CastScope {
  HRMInnerImpl& inner;
  explicit CastScope(HRMInnerImpl& m) : inner(m) { inner.cast_weights(); }
  ~CastScope() { inner.release_cast_weights(); }
};
}  // namespace

std::pair<Carry, ACTOutputs> HRMImpl::forward(const Carry& carry, const Batch& batch) {
  const ModelConfig& cfg = config();
  check(batch.size() == carry.halted.size(0), "HRM forward: batch size " + std::to_string(batch.size()) +
                                                  " differs from the carry's " + std::to_string(carry.halted.size(0)));
  CastScope casts(*inner);

  // Halted samples restart from the initial state on the new batch's data.
  const InnerCarry reset = inner->reset_carry(carry.halted, carry.inner);
  torch::Tensor steps = torch::where(carry.halted, torch::zeros_like(carry.steps), carry.steps);
  Batch current{select_rows(carry.halted, batch.inputs, carry.current.inputs),
                select_rows(carry.halted, batch.labels, carry.current.labels),
                select_rows(carry.halted, batch.puzzle_identifiers, carry.current.puzzle_identifiers)};

  SegmentOutput seg = inner->forward(reset, current);
  ACTOutputs out{seg.logits, seg.q_halt_logits, seg.q_continue_logits, {}};

  torch::NoGradGuard no_grad;
  steps = steps + 1;
  const torch::Tensor is_last_step = steps >= cfg.halt_max_steps;
  torch::Tensor halted = is_last_step;
  // Evaluation always runs halt_max_steps segments, so a batch halts together.
  if (is_training() && cfg.halt_max_steps > 1) {
    halted = cfg.no_ACT_continue ? (halted | (seg.q_halt_logits > 0))
                                 : (halted | (seg.q_halt_logits > seg.q_continue_logits));
    if (cfg.halt_exploration_prob > 0) {
      // Exploration: with some probability a sample must run at least a random 2..M_max segments.
      const torch::Tensor explore = torch::rand_like(seg.q_halt_logits) < cfg.halt_exploration_prob;
      const torch::Tensor min_steps = explore.to(steps.scalar_type()) *
                                      torch::randint_like(steps, 2, cfg.halt_max_steps + 1);
      halted = halted & (steps >= min_steps);
    }
    if (!cfg.no_ACT_continue) {
      // Bootstrapped Q target from the next segment (no replay buffer or target network; cf. PQN).
      const SegmentOutput next = inner->forward(seg.carry, current);
      out.target_q_continue = torch::sigmoid(torch::where(
          is_last_step, next.q_halt_logits, torch::maximum(next.q_halt_logits, next.q_continue_logits)));
    }
  }
  return {Carry{seg.carry, steps, halted, current}, out};
}

}  // namespace hrm
