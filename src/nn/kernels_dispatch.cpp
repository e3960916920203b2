// The fused kernels' entry points: forward to the instruction-set namespace of the active path (nn::cpu_isa), and
// the SwiGLU tables of the avx512 path. Compiled with the library's baseline flags.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fused_kernels.h"
#include "hrm/nn/cpu_isa.h"
#include "hrm/util/error.h"

namespace hrm::nn {
namespace {

bool cpu_runs(CpuIsa isa) {
#if HRM_KERNEL_ISAS_X86
  switch (isa) {
    case CpuIsa::Avx512: return __builtin_cpu_supports("x86-64-v4");
    case CpuIsa::Avx2: return __builtin_cpu_supports("x86-64-v3");
    case CpuIsa::Generic: return true;
  }
  return false;
#else
  return isa == CpuIsa::Generic;
#endif
}

void require_supported(CpuIsa isa, const std::string& what) {
  if (cpu_runs(isa)) return;
  std::string paths = "generic";
  for (CpuIsa other : {CpuIsa::Avx2, CpuIsa::Avx512})
    if (cpu_runs(other)) paths += std::string(", ") + cpu_isa_name(other);
  const std::string needs = !HRM_KERNEL_ISAS_X86    ? "an x86-64 build"
                            : isa == CpuIsa::Avx512 ? "AVX-512 F/BW/DQ/VL (x86-64-v4), which this CPU lacks"
                                                    : "AVX2 + FMA (x86-64-v3), which this CPU lacks";
  throw Error(what + cpu_isa_name(isa) + " needs " + needs + " (paths here: " + paths + ")");
}

constexpr int kUnresolved = -1;
std::atomic<int> g_isa{kUnresolved};

CpuIsa from_environment() {
  const char* env = std::getenv("HRM_CPU_ISA");
  if (env != nullptr && *env != '\0') {
    const CpuIsa isa = parse_cpu_isa(env, "HRM_CPU_ISA");
    require_supported(isa, "HRM_CPU_ISA=");
    return isa;
  }
  return supported_cpu_isas().back();
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Generic: return "generic";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "?";
}

CpuIsa parse_cpu_isa(const std::string& name, const std::string& what) {
  for (CpuIsa isa : {CpuIsa::Generic, CpuIsa::Avx2, CpuIsa::Avx512})
    if (name == cpu_isa_name(isa)) return isa;
  throw Error(what + ": '" + name + "' is not one of avx512, avx2, generic");
}

std::vector<CpuIsa> supported_cpu_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : {CpuIsa::Generic, CpuIsa::Avx2, CpuIsa::Avx512})
    if (cpu_runs(isa)) out.push_back(isa);
  return out;
}

CpuIsa cpu_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v == kUnresolved) {
    v = static_cast<int>(from_environment());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<CpuIsa>(v);
}

void set_cpu_isa(CpuIsa isa) {
  require_supported(isa, "cpu isa ");
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

namespace kernels {
namespace {

#if HRM_KERNEL_ISAS_X86
#define HRM_DISPATCH(call)                    \
  switch (cpu_isa()) {                        \
    case CpuIsa::Avx512: return avx512::call; \
    case CpuIsa::Avx2: return avx2::call;     \
    case CpuIsa::Generic: break;              \
  }                                           \
  return generic::call
#else
#define HRM_DISPATCH(call) return generic::call
#endif

#if HRM_KERNEL_ISAS_X86
// Tables per bf16 gate value, filled by the avx512 path's computing kernels: silu rounded to bf16 (the forward's
// output for up = 1) and silu' in float (the float backward's d_gate for dy = up = 1).
struct SiluTables {
  std::vector<float> silu, derivative;
};
const SiluTables& silu_tables() {
  static const SiluTables tables = [] {
    constexpr int64_t kValues = 65536;
    std::vector<bf16_bits> gate_up(2 * kValues), silu_bits(kValues);
    std::vector<float> gate_up_f(2 * kValues), ones(kValues, 1.0f), grads(2 * kValues);
    for (int64_t v = 0; v < kValues; ++v) {
      gate_up[v] = static_cast<bf16_bits>(v);
      gate_up[kValues + v] = 0x3F80;  // up = 1
      const uint32_t bits = static_cast<uint32_t>(v) << 16;
      static_assert(sizeof(float) == sizeof(bits));
      std::memcpy(&gate_up_f[v], &bits, sizeof bits);
      gate_up_f[kValues + v] = 1.0f;
    }
    avx512::swiglu(gate_up.data(), silu_bits.data(), 0, 1, kValues);
    avx512::swiglu_backward(gate_up_f.data(), ones.data(), grads.data(), 0, 1, kValues);
    SiluTables t;
    t.silu.resize(kValues);
    for (int64_t v = 0; v < kValues; ++v) {
      const uint32_t bits = static_cast<uint32_t>(silu_bits[v]) << 16;
      std::memcpy(&t.silu[v], &bits, sizeof bits);
    }
    t.derivative.assign(grads.begin(), grads.begin() + kValues);
    return t;
  }();
  return tables;
}
#endif

std::atomic<bool> g_silu_table{true};

// The tables when the avx512 path runs with them switched on, else null.
const float* const* active_silu_tables() {
#if HRM_KERNEL_ISAS_X86
  if (cpu_isa() != CpuIsa::Avx512 || !g_silu_table.load(std::memory_order_relaxed)) return nullptr;
  static const float* const pointers[2] = {silu_tables().silu.data(), silu_tables().derivative.data()};
  return pointers;
#else
  return nullptr;
#endif
}

}  // namespace

const float* silu_table_bf16() {
  const float* const* t = active_silu_tables();
  return t != nullptr ? t[0] : nullptr;
}

bool set_silu_table(bool enabled) {
  g_silu_table = enabled;
  return HRM_KERNEL_ISAS_X86 && cpu_isa() == CpuIsa::Avx512;
}

#define HRM_DEFINE_ENTRY_POINTS(T)                                                                                   \
  void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n, float eps) {      \
    HRM_DISPATCH(add_rms_norm(x, y, out, sum_out, r0, r1, n, eps));                                                  \
  }                                                                                                                  \
  void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n, float eps) {             \
    HRM_DISPATCH(rms_norm_backward(s, dy, ds, r0, r1, n, eps));                                                      \
  }                                                                                                                  \
  void attention(const T* qkv, const float* cos, const float* sin, T* out, float* scratch, int64_t bh0, int64_t bh1, \
                 int64_t H, int64_t S, int64_t D, float scale) {                                                     \
    HRM_DISPATCH(attention(qkv, cos, sin, out, scratch, bh0, bh1, H, S, D, scale));                                  \
  }                                                                                                                  \
  void attention_backward(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv, float* scratch, \
                          int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale) {                  \
    HRM_DISPATCH(attention_backward(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, D, scale));                 \
  }

HRM_DEFINE_ENTRY_POINTS(float)
HRM_DEFINE_ENTRY_POINTS(bf16_bits)
#undef HRM_DEFINE_ENTRY_POINTS

void swiglu(const float* gate_up, float* out, int64_t r0, int64_t r1, int64_t n) {
  HRM_DISPATCH(swiglu(gate_up, out, r0, r1, n));
}

void swiglu(const bf16_bits* gate_up, bf16_bits* out, int64_t r0, int64_t r1, int64_t n) {
#if HRM_KERNEL_ISAS_X86
  if (const float* const* t = active_silu_tables()) return avx512::swiglu_from_table(t[0], gate_up, out, r0, r1, n);
#endif
  HRM_DISPATCH(swiglu(gate_up, out, r0, r1, n));
}

void swiglu_backward(const float* gate_up, const float* dy, float* d_gate_up, int64_t r0, int64_t r1, int64_t n) {
  HRM_DISPATCH(swiglu_backward(gate_up, dy, d_gate_up, r0, r1, n));
}

void swiglu_backward(const bf16_bits* gate_up, const bf16_bits* dy, bf16_bits* d_gate_up, int64_t r0, int64_t r1,
                     int64_t n) {
#if HRM_KERNEL_ISAS_X86
  if (const float* const* t = active_silu_tables())
    return avx512::swiglu_backward_from_table(t[0], t[1], gate_up, dy, d_gate_up, r0, r1, n);
#endif
  HRM_DISPATCH(swiglu_backward(gate_up, dy, d_gate_up, r0, r1, n));
}

int64_t attention_scratch_floats(int64_t S, int64_t D) { HRM_DISPATCH(attention_scratch_floats(S, D)); }
double register_multiply_adds(int64_t iterations) { HRM_DISPATCH(register_multiply_adds(iterations)); }
void adam_atan2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, const AdamAtan2Constants& c) {
#if HRM_KERNEL_ISAS_X86
  switch (cpu_isa()) {
    case CpuIsa::Avx512: return avx512::adam_atan2(p, g, m, v, i0, i1, c);
    case CpuIsa::Avx2: return avx2::adam_atan2(p, g, m, v, i0, i1, c);
    case CpuIsa::Generic: break;
  }
#endif
  throw Error("adam_atan2: no kernel on the generic path");
}
int64_t attention_backward_scratch_floats(int64_t S, int64_t D) {
  HRM_DISPATCH(attention_backward_scratch_floats(S, D));
}

}  // namespace kernels
}  // namespace hrm::nn
