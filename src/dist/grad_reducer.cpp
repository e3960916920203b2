#include "hrm/dist/grad_reducer.h"

#include <torch/torch.h>

#include "hrm/util/error.h"

namespace hrm::dist {

GradientReducer::GradientReducer(std::vector<torch::Tensor> parameters, Group& group, int64_t bucket_bytes)
    : params_(std::move(parameters)), slots_(params_.size()), group_(group) {
  // Reverse order: the output heads' gradients come first in backward.
  std::vector<std::vector<size_t>> groups;
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const bool same_kind = !groups.empty() && params_[groups.back().front()].scalar_type() == p.scalar_type() &&
                           params_[groups.back().front()].device() == p.device();
    if (groups.empty() || !same_kind || bytes >= bucket_bytes) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(k);
    bytes += static_cast<int64_t>(p.numel() * p.element_size());
  }
  for (const auto& g : groups) {
    Bucket b;
    int64_t n = 0;
    for (size_t k : g) {
      slots_[k].bucket = buckets_.size();
      slots_[k].offset = n;
      n += params_[k].numel();
    }
    for (size_t j = 0; j < g.size(); ++j) slots_[g[j]].flag = n + static_cast<int64_t>(j);
    b.flat = torch::zeros({n + static_cast<int64_t>(g.size())}, params_[g.front()].options().requires_grad(false));
    b.params = g;
    buckets_.push_back(std::move(b));
  }
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) { on_gradient(k, grad); }));
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < params_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradientReducer::prepare() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& b : buckets_) {
    b.flat.zero_();
    b.ready = 0;
    b.launched = false;
  }
  for (auto& s : slots_) s.ready = false;
  next_launch_ = 0;
  armed_ = true;
}

void GradientReducer::on_gradient(size_t index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_) return;
  Slot& s = slots_[index];
  Bucket& b = buckets_[s.bucket];
  check(!b.launched, "GradientReducer: a gradient arrived after its bucket was sent");
  torch::NoGradGuard no_grad;
  torch::Tensor dst = b.flat.narrow(0, s.offset, grad.numel());
  if (s.ready) {  // autograd sums a leaf's uses before its hook; a second call would be a second backward
    dst.add_(grad.reshape(-1));
    return;
  }
  dst.copy_(grad.reshape(-1));
  b.flat[s.flag].fill_(1);
  s.ready = true;
  ++b.ready;
  launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].params.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.launched = true;
    b.work = group_.all_reduce_sum_async(b.flat);
  }
}

void GradientReducer::finish() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    check(armed_, "GradientReducer::finish without prepare");
    armed_ = false;
    // Parameters without a gradient on this rank contribute zeros (and a zero presence flag).
    while (next_launch_ < buckets_.size()) {
      Bucket& b = buckets_[next_launch_++];
      b.launched = true;
      b.work = group_.all_reduce_sum_async(b.flat);
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& b : buckets_) {
    b.work.wait();
    const int64_t count = static_cast<int64_t>(b.params.size());
    const torch::Tensor flags = b.flat.narrow(0, b.flat.numel() - count, count).to(torch::kCPU, torch::kDouble);
    for (size_t j = 0; j < b.params.size(); ++j) {
      const size_t k = b.params[j];
      const Slot& s = slots_[k];
      torch::Tensor& p = params_[k];
      if (flags[static_cast<int64_t>(j)].item<double>() == 0) continue;  // no rank had a gradient
      const torch::Tensor sum = b.flat.narrow(0, s.offset, p.numel()).view(p.sizes());
      if (p.grad().defined())
        p.mutable_grad().copy_(sum);
      else
        p.mutable_grad() = sum.clone();
    }
  }
}

}  // namespace hrm::dist
