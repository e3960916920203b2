#pragma once
// Optimizers of HRM: AdamATan2 for the dense parameters, SignSGD for the sparse puzzle embedding, and the learning
// rate schedule. Small classes with explicit state (state_dict / load_state_dict by parameter name).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "hrm/nn/puzzle_embedding.h"

namespace hrm::optim {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct AdamATan2Options {
  double beta1 = 0.9, beta2 = 0.95;
  double weight_decay = 0.1;
};

// Adam with atan2 in place of division (no epsilon), decoupled weight decay:
//   p *= 1 - lr*wd;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g^2;  p -= lr/bc1 * atan2(m, sqrt(v)/sqrt(bc2))
// with bc1 = 1 - b1^t, bc2 = 1 - b2^t. Parameters without a gradient are skipped.
class AdamATan2 {
 public:
  AdamATan2(NamedTensors params, AdamATan2Options options);

  void step(double lr);
  void zero_grad();

  int64_t step_count() const { return step_; }
  const AdamATan2Options& options() const { return options_; }
  const NamedTensors& params() const { return params_; }
  // First and second moments by parameter name (undefined until the parameter's first step).
  torch::Tensor& exp_avg(const std::string& name);
  torch::Tensor& exp_avg_sq(const std::string& name);

  // "step" (int64 scalar), "exp_avg.<name>", "exp_avg_sq.<name>".
  std::map<std::string, torch::Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, torch::Tensor>& state, const std::string& source);
  void set_step_count(int64_t step) { step_ = step; }

 private:
  struct State {
    torch::Tensor exp_avg, exp_avg_sq;
  };
  NamedTensors params_;
  std::map<std::string, State> state_;
  AdamATan2Options options_;
  int64_t step_ = 0;
};

// SignSGD with decoupled weight decay on the rows of the sparse puzzle embedding that the last training forward
// used: gradients of repeated identifiers are summed before the sign (Adam ~ SignSGD for very sparse gradients).
class SparseSignSGD {
 public:
  SparseSignSGD(nn::SparsePuzzleEmbedding embedding, double weight_decay);
  void step(double lr);
  void zero_grad();

 private:
  nn::SparsePuzzleEmbedding embedding_;
  double weight_decay_;
};

// Linear warm-up from 0, then cosine decay to base_lr * min_ratio at total_steps (the published schedule).
double cosine_schedule_with_warmup(int64_t step, double base_lr, int64_t warmup_steps, int64_t total_steps,
                                   double min_ratio = 0.0, double num_cycles = 0.5);

}  // namespace hrm::optim
