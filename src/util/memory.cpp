#include "hrm/util/memory.h"

#include <atomic>

#include <c10/core/CPUAllocator.h>
#include <torch/version.h>

namespace hrm {
namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define HRM_ALLOCATE_CONST
#else
#define HRM_ALLOCATE_CONST const
#endif

class TrackingAllocator final : public c10::Allocator {
 public:
  explicit TrackingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) HRM_ALLOCATE_CONST override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* ctx = new Context{std::move(inner), static_cast<int64_t>(n)};
    const int64_t now = g_current.fetch_add(ctx->size) + ctx->size;
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return c10::DataPtr(data, ctx, &TrackingAllocator::free, device);
  }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif

 private:
  struct Context {
    c10::DataPtr inner;
    int64_t size;
  };
  static void free(void* ctx) {
    auto* c = static_cast<Context*>(ctx);
    g_current.fetch_sub(c->size);
    delete c;
  }
  c10::Allocator* base_;
};

}  // namespace

CpuMemoryTracker& CpuMemoryTracker::install() {
  static CpuMemoryTracker tracker;
  static TrackingAllocator allocator(c10::GetDefaultCPUAllocator());
  static const bool installed = [] {
    c10::SetCPUAllocator(&allocator, /*priority=*/100);
    return true;
  }();
  (void)installed;
  return tracker;
}

int64_t CpuMemoryTracker::current_bytes() const { return g_current.load(); }
int64_t CpuMemoryTracker::peak_bytes() const { return g_peak.load(); }
void CpuMemoryTracker::reset_peak() { g_peak.store(g_current.load()); }

}  // namespace hrm
