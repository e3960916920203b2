#include "hrm/optim/ema.h"

#include <sstream>

#include "hrm/util/error.h"

namespace hrm {
namespace {
StateDict parameters(ACTModel& model) {
  StateDict out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) out[item.key()] = item.value();
  return out;
}
}  // namespace

EMA::EMA(ACTModel& model, double rate) : params_(parameters(model)), rate_(rate) {
  check(rate >= 0 && rate <= 1, "ema_rate must be in [0, 1], got " + std::to_string(rate));
  torch::NoGradGuard no_grad;
  for (const auto& [k, p] : params_) ema_[k] = p.detach().clone();
}

void EMA::update() {
  torch::NoGradGuard no_grad;
  for (auto& [k, e] : ema_) e.mul_(rate_).add_(params_.at(k).detach(), 1.0 - rate_);
}

void EMA::load(const StateDict& weights, const std::string& source) {
  torch::NoGradGuard no_grad;
  for (auto& [k, e] : ema_) {
    auto it = weights.find(k);
    if (it == weights.end()) throw Error(source + ": the EMA has no '" + k + "'");
    if (it->second.sizes() != e.sizes()) {
      std::ostringstream ss;
      ss << source << ": EMA shape mismatch for '" << k << "': " << it->second.sizes() << " vs " << e.sizes();
      throw Error(ss.str());
    }
    e.copy_(it->second);
  }
}

SwappedWeights::SwappedWeights(ACTModel& model, const StateDict& weights) : params_(parameters(model)) {
  torch::NoGradGuard no_grad;
  for (auto& [k, p] : params_) {
    auto it = weights.find(k);
    if (it == weights.end()) continue;
    saved_[k] = p.detach().clone();
    p.copy_(it->second);
  }
}

SwappedWeights::~SwappedWeights() {
  torch::NoGradGuard no_grad;
  for (auto& [k, v] : saved_) params_.at(k).copy_(v);
}

}  // namespace hrm
