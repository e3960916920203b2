#include "hrm/util/memory.h"

#include <atomic>
#include <mutex>
#include <unordered_map>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

// Context == data pointer (callers such as raw_allocate rely on it): the wrapped allocations live in a side table.
class TrackingAllocator final : public c10::Allocator {
 public:
  explicit TrackingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) HRM_ALLOCATE_CONST override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    if (data) {
      std::lock_guard<std::mutex> lock(mutex());
      live().emplace(data, Entry{std::move(inner), static_cast<int64_t>(n)});
      const int64_t now = g_current.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
      int64_t peak = g_peak.load();
      while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
      }
    }
    return c10::DataPtr(data, data, &TrackingAllocator::free, device);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &TrackingAllocator::free; }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif

 private:
  struct Entry {
    c10::DataPtr inner;
    int64_t size;
  };
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::unordered_map<void*, Entry>& live() {
    static auto* table = new std::unordered_map<void*, Entry>();  // never destroyed: frees may come at exit
    return *table;
  }
  static void free(void* data) {
    if (!data) return;
    c10::DataPtr release;
    {
      std::lock_guard<std::mutex> lock(mutex());
      auto it = live().find(data);
      if (it == live().end()) return;
      g_current.fetch_sub(it->second.size);
      release = std::move(it->second.inner);
      live().erase(it);
    }
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

void keep_freed_cpu_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum: larger blocks still get their own mapping
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}

}  // namespace hrm
