#pragma once
// Where computation runs: the device and the CPU thread count.
#include <cstdint>
#include <string>

namespace hrm {

// Device from "auto" | "cpu" | "cuda" | "cuda:N" (auto: CUDA when this LibTorch build has it).
std::string resolve_device(const std::string& device);
// Sets the intra-op thread count (0 = all cores) and keeps freed CPU memory for reuse (keep_freed_cpu_memory).
void set_threads(int64_t threads);
// Whether this CPU computes bfloat16 products natively (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo).
bool cpu_has_native_bf16();
// The CPU's model name, its core count and the SIMD extensions hrm's kernels use (from /proc/cpuinfo).
std::string cpu_description();

}  // namespace hrm
