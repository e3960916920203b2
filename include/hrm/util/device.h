#pragma once
// Where computation runs: the device and the CPU thread count.
#include <cstdint>
#include <string>

namespace hrm {

// Device from "auto" | "cpu" | "cuda" | "cuda:N" (auto: CUDA when this LibTorch build has it).
std::string resolve_device(const std::string& device);
// Sets the intra-op thread count (0 = all cores) and keeps freed CPU memory for reuse (keep_freed_cpu_memory).
void set_threads(int64_t threads);
// Whether this CPU computes bfloat16 products natively (AVX512-BF16 or AMX-BF16: cpu_flags). False when
// HRM_CPU_ISA forces the avx2 or generic kernel path: a machine then runs (forward_dtype auto, OpenMP wait policy)
// what a CPU without AVX-512 runs. False too when ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) caps oneDNN below its
// bf16 kernels (AVX512_CORE_BF16), where LibTorch runs bf16 products.
bool cpu_has_native_bf16();
// Whether this CPU runs bf16 products faster than float32 ones, so that forward_dtype auto resolves to bf16: with
// AMX-BF16 tiles (unless ONEDNN_MAX_CPU_ISA caps oneDNN below them), or with AVX512-BF16 on AMD cores (Zen 4 and 5
// issue vdpbf16ps at twice their float FMA rate). Intel cores without AMX (Cooper Lake; Sapphire or Emerald Rapids
// whose VM hides AMX) issue it at the FMA rate: oneDNN's bf16 products ran at 163 GFLOP/s there against 274 for its
// float32 ones (docs/benchmarks.md). False wherever cpu_has_native_bf16 is.
bool cpu_bf16_products_beat_float32();
// The two rules above on given facts, for tests: the CPU's vendor ("AuthenticAMD", "GenuineIntel") and flags (as
// cpu_flags names them), HRM_CPU_ISA and the upper-cased ONEDNN_MAX_CPU_ISA (empty: unset).
struct CpuFacts {
  std::string vendor, flags, hrm_cpu_isa, onednn_cap;
};
bool has_native_bf16(const CpuFacts& cpu);
bool bf16_products_beat_float32(const CpuFacts& cpu);
// Whether bf16 products run on hrm's AVX512-BF16 dot-product kernels instead of oneDNN's: where bf16 beats float32
// without AMX tiles (oneDNN's AMX kernels are faster still). On Zen 4 oneDNN 2.6's bf16 kernels reach 70-77% of the
// measured vdpbf16ps peak on HRM's layer shapes, hrm's 82-86% (docs/benchmarks.md).
bool bf16_products_on_dot_kernels(const CpuFacts& cpu);
bool cpu_bf16_products_on_dot_kernels();
// OpenMP's idle workers spin for a while after each parallel region. Where the forward runs in float32 (CPUs without
// bf16 products faster than float32 ones, where forward_dtype auto resolves to float32) and its GEMMs run on OpenBLAS's
// own threads (no oneDNN in the build, or the fused float32 path off: hrm::nn::linear_uses_onednn), the spinning
// workers starve them. libgomp reads OMP_WAIT_POLICY once, as it loads, so the `hrm` CLI calls this first: in that case
// and without a policy chosen by the user, it sets OMP_WAIT_POLICY=passive and re-executes the program (same pid, same
// arguments). Returns only when nothing was to be done or the exec failed.
void use_passive_openmp_workers_for_float32(char** argv, bool float32_products_on_openmp);

// The float32 GEMMs of `hrm verify-reference`: OpenBLAS's AVX-512 kernels (SkylakeX, Cooperlake, SapphireRapids,
// chosen on AVX-512 CPUs) sum in another order than its Haswell kernels, and the fixtures' chaotic and
// ill-conditioned elements then leave the float32 tolerance (docs/reference-parity.md). Where OpenBLAS is the BLAS,
// the CPU has AVX2 + FMA and OPENBLAS_CORETYPE is not set, this sets OPENBLAS_CORETYPE=Haswell (read once, as
// OpenBLAS loads) and re-executes the program. Returns only when nothing was to be done or the exec failed.
void use_reference_blas_kernels(char** argv);
// OpenBLAS 0.3.21 (Debian 12) picks its kernels by CPU model and falls back to SSE3 ("Prescott") on models newer than
// its table: Emerald Rapids (family 6 model 207) ran float32 products at 59 GFLOP/s on 2 cores instead of 250 with
// its SkylakeX kernels (docs/benchmarks.md). Where OpenBLAS's choice lacks AVX2 and OPENBLAS_CORETYPE is not set,
// this sets it to SkylakeX (AVX-512 F/BW/VL/DQ) or Haswell (AVX2 + FMA) and re-executes the program. Returns only
// when nothing was to be done or the exec failed. The CLI calls it for every command but verify-reference.
void use_blas_kernels_fitting_the_cpu(char** argv);
// Its rule: the OpenBLAS core to set given OpenBLAS's own choice and the CPU's flags; nullptr to keep the choice.
const char* blas_core_fitting(const std::string& openblas_core, const CpuFacts& cpu);
// "OpenBLAS <core> kernels" (its run-time kernel choice) or "not OpenBLAS".
std::string blas_description();

// The SIMD flags hrm's rules and kernels use that this CPU has and its OS enables (XCR0), by Linux's names: fma movbe
// avx2 bmi2 avx512f avx512dq avx512bw avx512vl amx_bf16 avx512_bf16. Read with CPUID, as the kernels' dispatch and
// oneDNN read them; /proc/cpuinfo lists the host's under user-mode emulation (qemu-x86_64 -cpu ...). Empty off x86.
std::string cpu_flags();
// Whether cpu_flags names `flag`.
bool cpu_has_flag(const char* flag);
// The CPU's model name, family and model numbers, core count and the SIMD extensions hrm's kernels use (CPUID).
std::string cpu_description();
// The L2 cache of one core in bytes, as the C library reads it (CPUID on x86); 0 where it is not known.
int64_t cpu_l2_cache_bytes();

}  // namespace hrm
