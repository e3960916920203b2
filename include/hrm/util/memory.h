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

}  // namespace hrm
