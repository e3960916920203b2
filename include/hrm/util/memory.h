#pragma once
// Exact accounting of CPU tensor memory: a wrapper around c10's CPU allocator that counts live and peak bytes.
#include <cstdint>

namespace hrm {

class CpuMemoryTracker {
 public:
  // Installs the tracker as the process's CPU allocator (idempotent). Tensors allocated before are not counted.
  static CpuMemoryTracker& install();

  int64_t current_bytes() const;
  int64_t peak_bytes() const;
  void reset_peak();  // peak := current

 private:
  CpuMemoryTracker() = default;
};

// Makes glibc keep freed heap memory for reuse instead of returning it to the kernel. By default every allocation
// above the mmap threshold (128 KiB, adapting up to 32 MiB) is a fresh mmap, so each training step page-faults and
// zeroes its activations anew (~100k faults per 10 small-preset steps). Blocks of 1 MiB and more are kept by a cache
// in front of c10's CPU allocator: above glibc's 32 MiB ceiling glibc always maps anew, and below it long-lived
// allocations (a profiler's records) split the heap's freed blocks (up to 2 GiB of freed blocks).
// Idempotent.
// set_threads() calls it, so the CLI, the trainer and the benchmark all run with it.
void keep_freed_cpu_memory();

// Minor page faults of this process so far (getrusage): each is a fresh page the kernel zero-filled.
int64_t minor_page_faults();

}  // namespace hrm
