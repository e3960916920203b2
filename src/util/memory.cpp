#include "hrm/util/memory.h"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

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
// The allocator the tracker forwards to: keep_freed_cpu_memory's block cache once it exists, else c10's default.
std::atomic<c10::Allocator*> g_tracked_base{nullptr};
c10::Allocator* tracked_base() {
  c10::Allocator* base = g_tracked_base.load();
  return base ? base : c10::GetDefaultCPUAllocator();
}

class TrackingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) HRM_ALLOCATE_CONST override {
    c10::DataPtr inner = tracked_base()->allocate(n);
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
};

// Keeps freed blocks of 1 MiB and more for reuse: a training step allocates the same activation sizes every time.
// - Above glibc's largest mmap threshold (32 MiB), glibc maps each block anew and unmaps it when freed, so the kernel
//   zero-fills it page by page on every use: [batch, heads, 900, 900] float32 attention scores of a 900-token
//   training step cost 1.6 million minor faults per step.
// - Below it, glibc's heap reuses a freed block only while nothing long-lived lands in it: under `hrm bench
//   --profile` the profiler's event records (kept until the trace is written) split such holes, and every step took
//   fresh heap (small preset: 35-46k minor faults and ~130 MB more resident memory per step; the profiled steps ~10%
//   slower than unprofiled ones).
// Blocks are kept by size (rounded up to a sixteenth of the size's power of two; a cached block is reused for
// requests between 80% and 100% of its size, the last freed first, as glibc does: it is the likeliest in cache) up
// to the most bytes of such blocks the process has had in use at once, and at least kMinCachedBytes; beyond that the
// oldest are released first. The bound follows the peak because a step that holds more than a fixed bound maps the
// excess anew every time (a float32 paper-size step at 900 tokens, batch 8, holds 2.5 GB: ~44k faults per step at
// 2 GiB, 8 in the median step this way). Smaller blocks go straight to the wrapped allocator. Context == data
// pointer, as c10 wants.
class LargeBlockCache final : public c10::Allocator {
 public:
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer replaces glibc's heap (nothing to fragment) and should see the frees of these blocks to catch a
  // use after free: only blocks above glibc's ceiling are cached there.
  static constexpr size_t kLargeBytes = size_t{32} << 20;
#else
  static constexpr size_t kLargeBytes = size_t{1} << 20;
#endif
  static constexpr size_t kMinCachedBytes = size_t{2} << 30;

  explicit LargeBlockCache(c10::Allocator* base) { base_ = base; }

  c10::DataPtr allocate(size_t n) HRM_ALLOCATE_CONST override {
    if (n < kLargeBytes) return base_->allocate(n);
    const size_t size = rounded(n);
    void* data = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex());
      auto it = free_blocks().lower_bound(size);
      if (it != free_blocks().end() && it->first <= size + size / 4) {
        it = std::prev(free_blocks().upper_bound(it->first));  // of that size, the last freed: likeliest in cache
        data = it->second.data;
        cached_bytes() -= it->first;
        mark_in_use(data, it->first);
        free_blocks().erase(it);
      }
    }
    if (data == nullptr) {
      if (::posix_memalign(&data, 64, size) != 0) throw std::bad_alloc();
      std::lock_guard<std::mutex> lock(mutex());
      mark_in_use(data, size);
    }
    return c10::DataPtr(data, data, &LargeBlockCache::release, c10::Device(c10::DeviceType::CPU));
  }

  c10::DeleterFnPtr raw_deleter() const override { return &LargeBlockCache::release; }

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#endif

 private:
  static size_t rounded(size_t n) {  // up to a sixteenth of n's power of two: at most 6.25% more
    size_t power = 1;
    while (power <= n / 2) power *= 2;
    const size_t granule = power / 16;
    return (n + granule - 1) / granule * granule;
  }
  struct Cached {
    void* data;
    uint64_t age;
  };
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  // Never destroyed: frees may come at exit.
  static std::unordered_map<void*, size_t>& in_use() {
    static auto* table = new std::unordered_map<void*, size_t>();
    return *table;
  }
  static std::multimap<size_t, Cached>& free_blocks() {
    static auto* blocks = new std::multimap<size_t, Cached>();
    return *blocks;
  }
  static size_t& cached_bytes() {
    static size_t bytes = 0;
    return bytes;
  }
  // Bytes of blocks in use now and at most so far (guarded by mutex()).
  static size_t& in_use_bytes() {
    static size_t bytes = 0;
    return bytes;
  }
  static size_t& peak_in_use_bytes() {
    static size_t bytes = 0;
    return bytes;
  }
  static void mark_in_use(void* data, size_t size) {
    in_use().emplace(data, size);
    in_use_bytes() += size;
    peak_in_use_bytes() = std::max(peak_in_use_bytes(), in_use_bytes());
  }
  // Frees a pointer from allocate or raw_allocate: large blocks back to the cache, others to the wrapped allocator.
  static void release(void* data) {
    if (data == nullptr) return;
    std::vector<void*> evicted;
    {
      std::lock_guard<std::mutex> lock(mutex());
      auto it = in_use().find(data);
      if (it == in_use().end()) {
        base_->raw_deleter()(data);
        return;
      }
      static uint64_t clock = 0;
      free_blocks().emplace(it->second, Cached{data, ++clock});
      cached_bytes() += it->second;
      in_use_bytes() -= it->second;
      in_use().erase(it);
      while (cached_bytes() > std::max(kMinCachedBytes, peak_in_use_bytes())) {
        auto oldest = free_blocks().begin();
        for (auto b = free_blocks().begin(); b != free_blocks().end(); ++b)
          if (b->second.age < oldest->second.age) oldest = b;
        cached_bytes() -= oldest->first;
        evicted.push_back(oldest->second.data);
        free_blocks().erase(oldest);
      }
    }
    for (void* p : evicted) std::free(p);
  }
  static inline c10::Allocator* base_ = nullptr;
};

}  // namespace

CpuMemoryTracker& CpuMemoryTracker::install() {
  static CpuMemoryTracker tracker;
  static TrackingAllocator allocator;
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
  static LargeBlockCache cache(c10::GetDefaultCPUAllocator());
  static const bool installed = [] {
    g_tracked_base.store(&cache);                   // under the tracker, whether it is installed yet or not
    c10::SetCPUAllocator(&cache, /*priority=*/50);  // without it (below the tracker's 100)
    return true;
  }();
  (void)installed;
}

int64_t minor_page_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

}  // namespace hrm
