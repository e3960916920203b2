#include "hrm/optim/optimizers.h"

#include <cmath>

#include "hrm/dist/group.h"
#include "hrm/nn/fused.h"
#include "hrm/util/error.h"

namespace hrm::optim {

// ------------------------------------------------------------------ AdamATan2
AdamATan2::AdamATan2(NamedTensors params, AdamATan2Options options) : params_(std::move(params)), options_(options) {
  for (const auto& [name, p] : params_) {
    check(p.is_floating_point(), "AdamATan2: parameter " + name + " is not floating point");
    state_[name];
  }
}

void AdamATan2::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(b2, static_cast<double>(step_));
  for (auto& [name, p] : params_) {
    const torch::Tensor& g = p.grad();
    if (!g.defined()) continue;
    State& s = state_[name];
    if (!s.exp_avg.defined()) {
      s.exp_avg = torch::zeros_like(p, torch::MemoryFormat::Preserve);
      s.exp_avg_sq = torch::zeros_like(p, torch::MemoryFormat::Preserve);
    }
    if (nn::adam_atan2_update(p, g, s.exp_avg, s.exp_avg_sq,
                              {1 - lr * options_.weight_decay, 1 - b1, b2, std::sqrt(bc2), -lr / bc1}))
      continue;  // the same update in one pass
    p.mul_(1 - lr * options_.weight_decay);
    s.exp_avg.lerp_(g, 1 - b1);
    s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2);
    p.add_(torch::atan2(s.exp_avg, s.exp_avg_sq.sqrt() / std::sqrt(bc2)), -lr / bc1);
  }
}

void AdamATan2::zero_grad() {
  for (auto& [name, p] : params_) {
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  }
}

torch::Tensor& AdamATan2::exp_avg(const std::string& name) {
  auto it = state_.find(name);
  check(it != state_.end(), "AdamATan2: no parameter named " + name);
  return it->second.exp_avg;
}

torch::Tensor& AdamATan2::exp_avg_sq(const std::string& name) {
  auto it = state_.find(name);
  check(it != state_.end(), "AdamATan2: no parameter named " + name);
  return it->second.exp_avg_sq;
}

std::map<std::string, torch::Tensor> AdamATan2::state_dict() const {
  std::map<std::string, torch::Tensor> out;
  out["step"] = torch::tensor(step_, torch::kLong);
  for (const auto& [name, s] : state_) {
    if (!s.exp_avg.defined()) continue;
    out["exp_avg." + name] = s.exp_avg;
    out["exp_avg_sq." + name] = s.exp_avg_sq;
  }
  return out;
}

void AdamATan2::load_state_dict(const std::map<std::string, torch::Tensor>& state, const std::string& source) {
  auto it = state.find("step");
  check(it != state.end(), source + ": optimizer state has no 'step'");
  const int64_t step = it->second.item<int64_t>();
  std::map<std::string, State> loaded;
  for (const auto& [name, p] : params_) {
    auto m = state.find("exp_avg." + name), v = state.find("exp_avg_sq." + name);
    check((m == state.end()) == (v == state.end()), source + ": optimizer state for " + name + " is incomplete");
    if (m == state.end()) {
      loaded[name];
      continue;
    }
    check(m->second.sizes() == p.sizes() && v->second.sizes() == p.sizes(),
          source + ": optimizer state for " + name + " has the wrong shape");
    loaded[name] = State{m->second.to(p.options()).clone(), v->second.to(p.options()).clone()};
  }
  for (const auto& [key, t] : state) {
    if (key == "step") continue;
    const auto dot = key.find('.');
    check(dot != std::string::npos && loaded.count(key.substr(dot + 1)),
          source + ": optimizer state has an entry for an unknown parameter: " + key);
  }
  state_ = std::move(loaded);
  step_ = step;
}

// ------------------------------------------------------------------ SparseSignSGD
SparseSignSGD::SparseSignSGD(nn::SparsePuzzleEmbedding embedding, double weight_decay)
    : embedding_(std::move(embedding)), weight_decay_(weight_decay) {
  check(!embedding_.is_empty(), "SparseSignSGD: the model has no puzzle embedding");
}

void SparseSignSGD::step(double lr) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& local = embedding_->local_weights;
  if (!local.defined() || !local.grad().defined()) return;
  // Data-parallel: every rank's ids and gradients, in rank order (the global batch's order), so that every rank
  // applies the same update.
  dist::Group& group = dist::world();
  const torch::Tensor grad = group.all_gather_cat(local.grad());
  const torch::Tensor all_ids = group.all_gather_cat(embedding_->local_ids);
  // Sum the gradients of repeated ids, then update each used row once.
  const auto uniq = at::_unique2(all_ids, /*sorted=*/true, /*return_inverse=*/true);
  const torch::Tensor ids = std::get<0>(uniq);
  const torch::Tensor inverse = std::get<1>(uniq);
  const torch::Tensor summed = torch::zeros({ids.size(0), grad.size(1)}, grad.options()).index_add_(0, inverse, grad);
  torch::Tensor& weights = embedding_->weights;
  const torch::Tensor rows = weights.index_select(0, ids);
  rows.mul_(1.0 - lr * weight_decay_).add_(torch::sign(summed), -lr);
  weights.index_copy_(0, ids, rows);
}

void SparseSignSGD::zero_grad() {
  torch::Tensor& local = embedding_->local_weights;
  if (local.defined() && local.grad().defined()) local.mutable_grad() = torch::Tensor();
}

// ------------------------------------------------------------------ schedule
double cosine_schedule_with_warmup(int64_t step, double base_lr, int64_t warmup_steps, int64_t total_steps,
                                   double min_ratio, double num_cycles) {
  if (step < warmup_steps)
    return base_lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  const double progress =
      static_cast<double>(step - warmup_steps) / static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  return base_lr *
         (min_ratio + std::max(0.0, (1 - min_ratio) * 0.5 * (1.0 + std::cos(M_PI * num_cycles * 2.0 * progress))));
}

}  // namespace hrm::optim
