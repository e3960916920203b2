#pragma once
// Data-parallel gradient sums that overlap the backward pass. A hook on each parameter copies its gradient into a
// flat bucket as soon as autograd produces it; a complete bucket starts its asynchronous all-reduce at once, while
// backward goes on with the layers below. Buckets hold parameters in reverse registration order (about the order
// backward produces them) and start strictly in bucket order, so every rank issues the same collectives in the same
// order. Each bucket also sums one presence flag per parameter: a parameter that got no gradient on any rank keeps
// none (as in one process), one that got a gradient on some rank gets the sum.
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <torch/types.h>

#include "hrm/dist/group.h"

namespace hrm::dist {

class GradientReducer {
 public:
  GradientReducer(std::vector<torch::Tensor> parameters, Group& group, int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  void prepare();  // before each backward
  void finish();   // after it: sends what is left, waits, and sets every parameter's gradient to the global sum
  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0, flag = 0;  // where its gradient and its presence flag sit in the bucket
    bool ready = false;
  };
  struct Bucket {
    torch::Tensor flat;  // gradients, then one presence flag per parameter
    std::vector<size_t> params;
    size_t ready = 0;
    bool launched = false;
    PendingWork work;
  };
  void on_gradient(size_t index, const torch::Tensor& grad);
  void launch_ready_buckets();  // in bucket order, while the next one is complete

  std::vector<torch::Tensor> params_;
  std::vector<unsigned> hooks_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool armed_ = false;
  Group& group_;
  std::mutex mutex_;
};

}  // namespace hrm::dist
