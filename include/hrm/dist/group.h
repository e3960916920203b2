#pragma once
// Collective communication between the processes of a run, on LibTorch's c10d: a TCPStore rendezvous at
// MASTER_ADDR:MASTER_PORT, ProcessGroupGloo on CPU tensors, ProcessGroupNCCL on CUDA tensors (when the LibTorch in
// use was built with it). One process alone is a group of one whose collectives are the identity, so callers need
// no branches. Every failure (rendezvous timeout, a peer that died, a collective that timed out) is an hrm::Error
// naming this rank and the operation; nothing waits longer than the group's timeout.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "hrm/dist/launch.h"

namespace hrm::dist {

struct GroupOptions {
  std::string backend = "auto";  // auto (nccl on CUDA, else gloo) | gloo | nccl
  double timeout_s = 300;        // rendezvous and every collective
  bool cuda = false;             // the tensors live on this rank's GPU
};

// What this process sent and how long it waited, since the last reset().
struct CommStats {
  int64_t bytes = 0;  // payload handed to collectives (all-reduce: the buffer size)
  int64_t collectives = 0;
  double wait_s = 0;  // time blocked in wait(): communication not hidden behind computation
  void reset() { *this = CommStats{}; }
};

// A collective in flight; wait() blocks until it is done (rethrowing its error as an hrm::Error).
class PendingWork {
 public:
  PendingWork() = default;
  explicit PendingWork(std::function<void()> wait) : wait_(std::move(wait)) {}
  void wait() {
    if (wait_) wait_();
    wait_ = nullptr;
  }

 private:
  std::function<void()> wait_;
};

class Group {
 public:
  Group();  // one process
  // Joins the run described by `where` (blocks until every rank has joined or the timeout passes).
  Group(const LaunchInfo& where, const GroupOptions& options);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }
  bool distributed() const { return world_size_ > 1; }
  // Joined through c10d (a run of one rank included): collectives really run. Otherwise they are the identity.
  bool connected() const { return impl_ != nullptr; }
  const std::string& backend() const { return backend_; }
  CommStats& stats() { return stats_; }

  // Every rank passes tensors of the same shapes and dtypes, in the same order of calls.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);  // in place
  PendingWork all_reduce_sum_async(torch::Tensor tensor);    // in place once waited on
  // Every rank's `tensor`, concatenated along dim 0 in rank order.
  torch::Tensor all_gather_cat(const torch::Tensor& tensor);
  void broadcast(std::vector<torch::Tensor>& tensors, int64_t root = 0);  // in place
  std::string broadcast_string(const std::string& text, int64_t root = 0);
  void barrier();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t rank_ = 0, world_size_ = 1;
  std::string backend_ = "none";
  CommStats stats_;
};

// The process-wide group (as torch.distributed's default group): one process unless a WorldScope is alive.
Group& world();

// Makes `group` the process-wide group while alive.
class WorldScope {
 public:
  explicit WorldScope(std::shared_ptr<Group> group);
  ~WorldScope();
  WorldScope(const WorldScope&) = delete;
  WorldScope& operator=(const WorldScope&) = delete;

 private:
  std::shared_ptr<Group> previous_;
};

}  // namespace hrm::dist
