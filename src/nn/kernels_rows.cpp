// Row kernels: residual + RMSNorm and SwiGLU, with their backward passes; SwiGLU on bf16 gates by table.
#include <algorithm>
#include <atomic>
#include <vector>

#include "simd.h"

namespace hrm::nn::kernels {
namespace {
using namespace simd;

// ---------------------------------------------------------------- row kernels
// sum_out (may be null) receives s = x + y rounded to T, which the backward needs.
template <class T>
HRM_INLINE void add_rms_norm_rows(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n,
                                  float eps) {
  // The sums wait in float on the stack for the second pass (rows up to kStash wide; wider ones go through out),
  // which saves a round trip through T.
  constexpr int64_t kStash = 4096;
  float stash[kStash];
  const bool stashed = n <= kStash;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    const T* yr = y ? y + r * n : nullptr;
    T* o = out + r * n;
    vfloat sum_sq{};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat s = yr ? round_to<T>(load(xr + i, c) + load(yr + i, c)) : load(xr + i, c);
      if (stashed)
        store_full(stash + i, s);
      else
        store(o + i, s, c);
      if (sum_out) store(sum_out + r * n + i, s, c);
      sum_sq += s * s;
    }
    const float inv = 1.0f / std::sqrt(sum_lanes(sum_sq) / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      store(o + i, (stashed ? load_full(stash + i) : load(o + i, c)) * inv, c);
    }
  }
}

// Gradient of rms_norm at s: with r = 1/sqrt(mean(s^2) + eps) and y = s*r, ds = r * (dy - y * mean(dy * y)).
template <class T>
HRM_INLINE void rms_norm_backward_rows(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* sr = s + r * n;
    const T* dyr = dy + r * n;
    vfloat sum_sq{}, dot{};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat sv = load(sr + i, c);
      sum_sq += sv * sv;
      dot += load(dyr + i, c) * sv;
    }
    const float inv = 1.0f / std::sqrt(sum_lanes(sum_sq) / static_cast<float>(n) + eps);
    const float mean_dy_y = sum_lanes(dot) * inv / static_cast<float>(n);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      store(ds + r * n + i, (load(dyr + i, c) - load(sr + i, c) * (inv * mean_dy_y)) * inv, c);
    }
  }
}

// silu(g) = g / (1 + exp(-g)), the reference's formula; forward and backward share it, so the backward multiplies
// with exactly the forward's (rounded) output, as the reference's autograd does.
HRM_INLINE vfloat silu(vfloat g) { return g / (1.0f + exp(-g)); }

template <class T>
HRM_INLINE void swiglu_rows(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = gate_up + r * 2 * n;
    const T* u = g + n;
    T* o = out + r * n;
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      store(o + i, round_to<T>(silu(load(g + i, c))) * load(u + i, c), c);
    }
  }
}

// Row r of the backward's buffers: gate_up = [gate | up] and d_gate_up = [d_gate | d_up] (2n wide), dy (n wide).
template <class T>
struct SwigluBackwardRow {
  const T *g, *u, *dyr;
  T *dg, *du;
  HRM_INLINE SwigluBackwardRow(const T* gate_up, const T* dy, T* d_gate_up, int64_t r, int64_t n)
      : g(gate_up + r * 2 * n), u(g + n), dyr(dy + r * n), dg(d_gate_up + r * 2 * n), du(dg + n) {}
};

// silu'(g) = sigmoid(g) * (1 + g * (1 - sigmoid(g))).
HRM_INLINE vfloat silu_derivative(vfloat g) {
  const vfloat sig = 1.0f / (1.0f + exp(-g));
  return sig * (1.0f + g * (1.0f - sig));
}

// Gradient of silu(g) * u, rounded where the reference's autograd rounds: d_up = dy * silu(g) (the forward's silu,
// rounded to T), d_gate = (dy * u rounded to T) * silu'(g).
template <class T>
HRM_INLINE void swiglu_backward_rows(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto [g, u, dyr, dg, du] = SwigluBackwardRow<T>(gate_up, dy, d_gate_up, r, n);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat gv = load(g + i, c), dyv = load(dyr + i, c);
      store(du + i, dyv * round_to<T>(silu(gv)), c);
      store(dg + i, round_to<T>(dyv * load(u + i, c)) * silu_derivative(gv), c);
    }
  }
}

#if HRM_SILU_TABLE
// ---------------------------------------------------------------- SwiGLU on bf16 gates by table lookup
// A bf16 gate has 65536 possible values, so silu(gate) rounded to bf16 -- what the reference multiplies with
// `up` -- is a table (256 KiB as floats, in L2), filled once by the computing kernel itself, so both paths give
// bit-identical results. An AVX-512 gather replaces exp and the division, the bulk of the kernel's time. The
// backward gathers the same silu and, from a second table, the derivative.
#define HRM_TABLE_FN __attribute__((target("arch=x86-64-v4")))

// table[g[k]] for 16 bf16 gates (maskz/mask forms: the plain ones start from _mm512_undefined, which GCC 12 warns
// about).
HRM_TABLE_FN inline __attribute__((always_inline)) vfloat gather16(const float* table, const bf16_bits* g) {
  const __m512i index = _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
  return reinterpret_cast<vfloat>(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, index, table, 4));
}

HRM_TABLE_FN void swiglu_from_table(const float* silu_table, const bf16_bits* gate_up, bf16_bits* out, int64_t r0,
                                    int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const bf16_bits* g = gate_up + r * 2 * n;
    const bf16_bits* u = g + n;
    bf16_bits* o = out + r * n;
    int64_t i = 0;
    for (; i + W <= n; i += W) store_full(o + i, gather16(silu_table, g + i) * load_full(u + i));
    for (; i < n; ++i) o[i] = round_bf16(silu_table[g[i]] * widen_bf16(u[i]));
  }
}

std::atomic<bool> g_silu_table{true};
bool silu_table_enabled() { return g_silu_table.load(std::memory_order_relaxed); }

// Backward: d_up = dy * silu(g) (the forward's table) and d_gate = round(dy * up) * silu'(g) (float table).
HRM_TABLE_FN void swiglu_backward_from_table(const float* silu_table, const float* derivative_table,
                                             const bf16_bits* gate_up, const bf16_bits* dy, bf16_bits* d_gate_up,
                                             int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto [g, u, dyr, dg, du] = SwigluBackwardRow<bf16_bits>(gate_up, dy, d_gate_up, r, n);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      const vfloat dyv = load_full(dyr + i);
      store_full(du + i, dyv * gather16(silu_table, g + i));
      store_full(dg + i, round_to<bf16_bits>(dyv * load_full(u + i)) * gather16(derivative_table, g + i));
    }
    for (; i < n; ++i) {
      const float dyv = widen_bf16(dyr[i]);
      du[i] = round_bf16(dyv * silu_table[g[i]]);
      dg[i] = round_bf16(widen_bf16(round_bf16(dyv * widen_bf16(u[i]))) * derivative_table[g[i]]);
    }
  }
}

// Tables per bf16 gate value: silu rounded to bf16 (the forward kernel's output) and silu' in float (the float
// backward kernel's d_gate for dy = up = 1). Empty where the CPU has no x86-64-v4.
struct SiluTables {
  std::vector<float> silu, derivative;
};
const SiluTables& silu_tables() {
  static const SiluTables tables = [] {
    SiluTables t;
    if (!__builtin_cpu_supports("x86-64-v4")) return t;
    constexpr int64_t kValues = 65536;
    std::vector<bf16_bits> gate_up(2 * kValues), silu_bits(kValues);
    std::vector<float> gate_up_f(2 * kValues), ones(kValues, 1.0f), grads(2 * kValues);
    for (int64_t v = 0; v < kValues; ++v) {
      gate_up[v] = static_cast<bf16_bits>(v);
      gate_up[kValues + v] = 0x3F80;  // up = 1
      gate_up_f[v] = widen_bf16(static_cast<bf16_bits>(v));
      gate_up_f[kValues + v] = 1.0f;
    }
    swiglu_computed(gate_up.data(), silu_bits.data(), 0, 1, kValues);
    swiglu_backward_computed(gate_up_f.data(), ones.data(), grads.data(), 0, 1, kValues);
    t.silu.resize(kValues);
    for (int64_t v = 0; v < kValues; ++v) t.silu[v] = widen_bf16(silu_bits[v]);
    t.derivative.assign(grads.begin(), grads.begin() + kValues);
    return t;
  }();
  return tables;
}

// The tables, or null where there are none or they are switched off.
const SiluTables* active_silu_tables() {
  const SiluTables& t = silu_tables();
  return t.silu.empty() || !silu_table_enabled() ? nullptr : &t;
}
#endif

}  // namespace

// Multiversioned entry points, one overload per element type (target_clones does not apply to templates).
#define HRM_DEFINE_ENTRY_POINTS(T)                                                                                    \
  HRM_MULTIVERSION void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n,   \
                                     float eps) {                                                                     \
    add_rms_norm_rows<T>(x, y, out, sum_out, r0, r1, n, eps);                                                         \
  }                                                                                                                   \
  HRM_MULTIVERSION void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n,          \
                                          float eps) {                                                                \
    rms_norm_backward_rows<T>(s, dy, ds, r0, r1, n, eps);                                                             \
  }                                                                                                                   \
  HRM_MULTIVERSION void swiglu_computed(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {                \
    swiglu_rows<T>(gate_up, out, r0, r1, n);                                                                          \
  }                                                                                                                   \
  HRM_MULTIVERSION void swiglu_backward_computed(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, \
                                                 int64_t n) {                                                         \
    swiglu_backward_rows<T>(gate_up, dy, d_gate_up, r0, r1, n);                                                       \
  }

HRM_DEFINE_ENTRY_POINTS(float)
HRM_DEFINE_ENTRY_POINTS(bf16_bits)
#undef HRM_DEFINE_ENTRY_POINTS

void swiglu(const float* gate_up, float* out, int64_t r0, int64_t r1, int64_t n) {
  swiglu_computed(gate_up, out, r0, r1, n);
}

void swiglu(const bf16_bits* gate_up, bf16_bits* out, int64_t r0, int64_t r1, int64_t n) {
#if HRM_SILU_TABLE
  if (const SiluTables* t = active_silu_tables()) return swiglu_from_table(t->silu.data(), gate_up, out, r0, r1, n);
#endif
  swiglu_computed(gate_up, out, r0, r1, n);
}

void swiglu_backward(const float* gate_up, const float* dy, float* d_gate_up, int64_t r0, int64_t r1, int64_t n) {
  swiglu_backward_computed(gate_up, dy, d_gate_up, r0, r1, n);
}

void swiglu_backward(const bf16_bits* gate_up, const bf16_bits* dy, bf16_bits* d_gate_up, int64_t r0, int64_t r1,
                     int64_t n) {
#if HRM_SILU_TABLE
  if (const SiluTables* t = active_silu_tables())
    return swiglu_backward_from_table(t->silu.data(), t->derivative.data(), gate_up, dy, d_gate_up, r0, r1, n);
#endif
  swiglu_backward_computed(gate_up, dy, d_gate_up, r0, r1, n);
}

bool set_silu_table(bool enabled) {
#if HRM_SILU_TABLE
  g_silu_table = enabled;
  return !silu_tables().silu.empty();
#else
  (void)enabled;
  return false;
#endif
}

}  // namespace hrm::nn::kernels
