#include "hrm/model/act.h"

#include "hrm/util/error.h"

namespace hrm {
namespace {

torch::Tensor select_rows(const torch::Tensor& halted, const torch::Tensor& fresh, const torch::Tensor& old) {
  std::vector<int64_t> shape(static_cast<size_t>(fresh.dim()), 1);
  shape[0] = -1;
  return torch::where(halted.view(shape), fresh, old);
}

// Cast copies live for one ACT forward: the graph keeps what backward needs.
struct CastScope {
  ReasoningCore& core;
  explicit CastScope(ReasoningCore& c) : core(c) { core.cast_weights(); }
  ~CastScope() { core.release_cast_weights(); }
};

}  // namespace

StateDict Carry::state_dict(const std::string& prefix) const {
  StateDict s{{prefix + "z_H", inner.z_H},         {prefix + "steps", steps},
              {prefix + "halted", halted},         {prefix + "inputs", current.inputs},
              {prefix + "labels", current.labels}, {prefix + "puzzle_identifiers", current.puzzle_identifiers}};
  if (inner.z_L.defined()) s[prefix + "z_L"] = inner.z_L;
  return s;
}

Carry Carry::from_state_dict(const StateDict& state, const std::string& prefix, c10::ScalarType dtype,
                             const torch::Device& device, const std::string& source) {
  auto get = [&](const std::string& k) {
    auto it = state.find(prefix + k);
    if (it == state.end()) throw Error(source + ": the carry has no '" + prefix + k + "'");
    return it->second.to(device);
  };
  Carry c;
  c.inner.z_H = get("z_H").to(dtype);
  if (state.count(prefix + "z_L")) c.inner.z_L = get("z_L").to(dtype);
  c.steps = get("steps");
  c.halted = get("halted");
  c.current = Batch{get("inputs"), get("labels"), get("puzzle_identifiers")};
  return c;
}

ACTModelImpl::ACTModelImpl(std::shared_ptr<ReasoningCore> core) {
  check(core != nullptr, "ACTModel: no model");
  inner = register_module("inner", std::move(core));
}

Carry ACTModelImpl::initial_carry(const Batch& batch) {
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

std::pair<Carry, ACTOutputs> ACTModelImpl::forward(const Carry& carry, const Batch& batch) {
  const ModelConfig& cfg = config();
  check(batch.size() == carry.halted.size(0), "ACT forward: batch size " + std::to_string(batch.size()) +
                                                  " differs from the carry's " + std::to_string(carry.halted.size(0)));
  CastScope casts(*inner);

  // Halted samples restart from the initial state on the new batch's data.
  const InnerCarry reset = inner->reset_carry(carry.halted, carry.inner);
  torch::Tensor steps = torch::where(carry.halted, torch::zeros_like(carry.steps), carry.steps);
  Batch current{select_rows(carry.halted, batch.inputs, carry.current.inputs),
                select_rows(carry.halted, batch.labels, carry.current.labels),
                select_rows(carry.halted, batch.puzzle_identifiers, carry.current.puzzle_identifiers),
                batch.global_size, batch.row_offset};

  SegmentOutput seg = inner->forward(reset, current);
  ACTOutputs out{seg.logits, seg.q_halt_logits, seg.q_continue_logits, {}};

  torch::NoGradGuard no_grad;
  steps = steps + 1;
  const torch::Tensor is_last_step = steps >= cfg.halt_max_steps;
  torch::Tensor halted = is_last_step;
  const HaltingPolicy policy = inner->halting();
  // Unless the model halts adaptively at evaluation, evaluation runs halt_max_steps segments (a batch halts together).
  if ((is_training() ? policy.adaptive_in_training : policy.adaptive_at_eval) && cfg.halt_max_steps > 1) {
    halted = halted | (policy.rule == HaltRule::QHaltPositive ? seg.q_halt_logits > 0
                                                              : seg.q_halt_logits > seg.q_continue_logits);
    if (is_training() && cfg.halt_exploration_prob > 0) {
      // Exploration: with some probability a sample must run at least a random 2..M_max segments. Drawn for the
      // global batch and sliced, so the draws do not depend on how many processes share the batch.
      const int64_t G = current.global_rows(), off = current.row_offset, B = current.size();
      const torch::Tensor explore =
          torch::rand({G}, seg.q_halt_logits.options()).narrow(0, off, B) < cfg.halt_exploration_prob;
      const torch::Tensor min_steps = explore.to(steps.scalar_type()) *
                                      torch::randint(2, cfg.halt_max_steps + 1, {G}, steps.options()).narrow(0, off, B);
      halted = halted & (steps >= min_steps);
    }
    if (is_training() && policy.target_q) {
      // Bootstrapped Q target from the next segment (no replay buffer or target network; cf. PQN).
      const SegmentOutput next = inner->forward(seg.carry, current);
      out.target_q_continue = torch::sigmoid(
          torch::where(is_last_step, next.q_halt_logits, torch::maximum(next.q_halt_logits, next.q_continue_logits)));
    }
  }
  return {Carry{seg.carry, steps, halted, current}, out};
}

Carry run_to_halt(ACTModel& model, const Batch& batch,
                  const std::function<void(int64_t segment, const Carry& carry, const ACTOutputs& out)>& each) {
  Carry carry = model->initial_carry(batch);
  for (int64_t s = 0; s < model->config().halt_max_steps; ++s) {
    auto [next, out] = model->forward(carry, batch);
    carry = std::move(next);
    each(s, carry, out);
    if (carry.halted.all().item<bool>()) break;
  }
  return carry;
}

}  // namespace hrm
