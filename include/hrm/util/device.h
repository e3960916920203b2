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
// OpenMP's idle workers spin for a while after each parallel region. Where the forward runs in float32 (CPUs without
// native bf16, where forward_dtype auto resolves to float32), the GEMMs run on OpenBLAS's own threads, which the
// spinning workers starve. libgomp reads OMP_WAIT_POLICY once, as it loads, so the `hrm` CLI calls this first:
// without native bf16 and without a policy chosen by the user, it sets OMP_WAIT_POLICY=passive and re-executes the
// program (same pid, same arguments). Returns only when nothing was to be done or the exec failed.
void use_passive_openmp_workers_for_float32(char** argv);

// The CPU's model name, its core count and the SIMD extensions hrm's kernels use (from /proc/cpuinfo).
std::string cpu_description();

}  // namespace hrm
