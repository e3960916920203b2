#include "hrm/dist/group.h"

#include <chrono>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if defined(HRM_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/torch.h>

#include "hrm/util/error.h"

namespace hrm::dist {
namespace {

// c10d's messages carry a C++ backtrace after the first line: keep the first line.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// A tensor as the backends take it: contiguous, bool as uint8 and reduced floats as float32 (exact both ways), so
// that callers may hand any tensor to a collective.
torch::Tensor wire_form(const torch::Tensor& t) {
  const auto dtype = t.scalar_type();
  if (dtype == torch::kBool) return t.to(torch::kUInt8).contiguous();
  if (dtype == torch::kBFloat16 || dtype == torch::kHalf) return t.to(torch::kFloat).contiguous();
  return t.contiguous();
}

std::string seconds(double s) {
  std::ostringstream o;
  o << s << " s";
  return o.str();
}

std::mutex g_world_mutex;
std::shared_ptr<Group>& world_slot() {
  static std::shared_ptr<Group> w = std::make_shared<Group>();
  return w;
}

}  // namespace

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  // ProcessGroupGloo derives from c10d::ProcessGroup in LibTorch 1.x and from c10d::Backend in 2.x; both expose the
  // collectives used here with the same signatures, so the concrete type is kept.
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#if defined(HRM_HAVE_NCCL)
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::string where;  // "rank R of W" for messages

  template <typename Op>
  auto run(const std::string& what, Op&& op) {
    try {
#if defined(HRM_HAVE_NCCL)
      if (nccl) return op(*nccl);
#endif
      return op(*gloo);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error("distributed " + what + " failed on " + where + ": " + first_line(e.what()) +
                  " (a peer process stopped, or the network failed)");
    }
  }
};

Group::Group() = default;
Group::~Group() = default;

Group::Group(const LaunchInfo& where, const GroupOptions& options)
    : impl_(std::make_unique<Impl>()), rank_(where.rank), world_size_(where.world_size) {
  std::string backend = options.backend;
  if (backend == "auto") backend = options.cuda ? "nccl" : "gloo";
  check(backend == "gloo" || backend == "nccl", "dist.backend must be auto, gloo or nccl, not '" + backend + "'");
#if !defined(HRM_HAVE_NCCL)
  check(backend != "nccl",
        "dist.backend nccl: this build of hrm has no NCCL (its LibTorch was built without it, or without CUDA); use "
        "dist.backend=gloo");
#endif
  check(backend != "nccl" || options.cuda, "dist.backend nccl needs device cuda");
  backend_ = backend;
  impl_->where = "rank " + std::to_string(rank_) + " of " + std::to_string(world_size_);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
  const std::string endpoint = where.master_addr + ":" + std::to_string(where.port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(where.port);
    so.isServer = rank_ == 0;
    so.numWorkers = static_cast<size_t>(world_size_);
    so.waitWorkers = true;
    so.timeout = timeout;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
    // 2.4 made the libuv server the default, but builds without libuv (Debian's) then refuse to start.
    so.useLibUV = false;
#endif
    impl_->store = c10::make_intrusive<c10d::TCPStore>(where.master_addr, so);
  } catch (const std::exception& e) {
    throw Error("distributed rendezvous at " + endpoint + " failed on " + impl_->where + " within " +
                seconds(options.timeout_s) + ": " + first_line(e.what()) +
                (rank_ == 0 ? " (is the port free? did every rank start?)" : " (is rank 0 running?)"));
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("hrm/" + backend, impl_->store);
  try {
    if (backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      if (ifname && *ifname)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (where.master_addr == "127.0.0.1" || where.master_addr == "localhost")
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      o->threads = 2;
      impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, static_cast<int>(rank_),
                                                                static_cast<int>(world_size_), o);
    } else {
#if defined(HRM_HAVE_NCCL)
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, static_cast<int>(rank_),
                                                                static_cast<int>(world_size_), o);
#endif
    }
  } catch (const std::exception& e) {
    throw Error("distributed " + backend + " group at " + endpoint + " failed on " + impl_->where + ": " +
                first_line(e.what()) + " (did every rank start within the timeout of " + seconds(options.timeout_s) +
                "?)");
  }
}

void Group::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  for (auto& t : tensors) all_reduce_sum_async(t).wait();
}

PendingWork Group::all_reduce_sum_async(torch::Tensor tensor) {
  if (!connected()) return PendingWork();
  stats_.bytes += static_cast<int64_t>(tensor.numel() * tensor.element_size());
  ++stats_.collectives;
  auto work = impl_->run("all-reduce", [&](auto& pg) {
    std::vector<at::Tensor> v{tensor};
    return pg.allreduce(v, c10d::AllreduceOptions{});
  });
  Impl* impl = impl_.get();
  CommStats* stats = &stats_;
  return PendingWork([impl, stats, work]() mutable {
    const auto t0 = std::chrono::steady_clock::now();
    impl->run("all-reduce", [&](auto&) { return work->wait(); });
    stats->wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
}

torch::Tensor Group::all_gather_cat(const torch::Tensor& tensor) {
  if (!connected()) return tensor;
  const torch::Tensor input = wire_form(tensor);
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int64_t r = 0; r < world_size_; ++r) outputs[0].push_back(torch::empty_like(input));
  stats_.bytes += static_cast<int64_t>(input.numel() * input.element_size());
  ++stats_.collectives;
  const auto t0 = std::chrono::steady_clock::now();
  impl_->run("all-gather", [&](auto& pg) {
    std::vector<at::Tensor> in{input};
    return pg.allgather(outputs, in, c10d::AllgatherOptions{})->wait();
  });
  stats_.wait_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return torch::cat(outputs[0], 0).to(tensor.scalar_type());
}

void Group::broadcast(std::vector<torch::Tensor>& tensors, int64_t root) {
  if (!connected()) return;
  torch::NoGradGuard no_grad;  // parameters are written in place
  for (auto& t : tensors) {
    const torch::Tensor wire = wire_form(t);  // t itself when the backend takes it as it is
    stats_.bytes += static_cast<int64_t>(wire.numel() * wire.element_size());
    ++stats_.collectives;
    impl_->run("broadcast", [&](auto& pg) {
      std::vector<at::Tensor> v{wire};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      return pg.broadcast(v, o)->wait();
    });
    if (wire.data_ptr() != t.data_ptr()) t.copy_(wire);
  }
}

std::string Group::broadcast_string(const std::string& text, int64_t root) {
  if (!connected()) return text;
  std::vector<torch::Tensor> size{torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong)};
  broadcast(size, root);
  const int64_t n = size[0].item<int64_t>();
  std::vector<torch::Tensor> bytes{torch::zeros({std::max<int64_t>(n, 1)}, torch::kUInt8)};
  if (rank_ == root) std::memcpy(bytes[0].data_ptr(), text.data(), text.size());
  broadcast(bytes, root);
  return std::string(static_cast<const char*>(bytes[0].data_ptr()), static_cast<size_t>(n));
}

void Group::barrier() {
  if (!connected()) return;
  impl_->run("barrier", [&](auto& pg) { return pg.barrier(c10d::BarrierOptions{})->wait(); });
}

Group& world() {
  std::lock_guard<std::mutex> lock(g_world_mutex);
  return *world_slot();
}

WorldScope::WorldScope(std::shared_ptr<Group> group) {
  std::lock_guard<std::mutex> lock(g_world_mutex);
  previous_ = std::move(world_slot());
  world_slot() = std::move(group);
}

WorldScope::~WorldScope() {
  std::lock_guard<std::mutex> lock(g_world_mutex);
  world_slot() = std::move(previous_);
}

}  // namespace hrm::dist
