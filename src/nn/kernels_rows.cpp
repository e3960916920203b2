// Row kernels: residual + RMSNorm and SwiGLU, with their backward passes; SwiGLU on bf16 gates by table; the
// AdamATan2 step.
#include <algorithm>

#include "simd.h"

namespace hrm::nn::kernels::HRM_KERNEL_ISA {
namespace {
using namespace simd;

// ---------------------------------------------------------------- row kernels
// sum_out (may be null) receives s = x + y rounded to T, which the backward needs.
// One row's x (+ y), rounded to T: whole vectors where the row has them.
template <class T, bool kWithY>
HRM_INLINE vfloat row_sum(const T* xr, const T* yr, int64_t i, int64_t c) {
  if constexpr (kWithY)
    return round_to<T>(c == W ? load_full(xr + i) + load_full(yr + i) : load(xr + i, c) + load(yr + i, c));
  else
    return c == W ? load_full(xr + i) : load(xr + i, c);
}

template <class T, bool kWithY>
HRM_INLINE void add_rms_norm_rows(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n,
                                  float eps) {
  // The sums wait in float on the stack for the second pass (rows up to kStash wide; wider ones go through out),
  // which saves a round trip through T. Two accumulators: one is a dependency chain n / W long.
  constexpr int64_t kStash = 4096;
  float stash[kStash];
  const bool stashed = n <= kStash;
  const int64_t n_full = n / W * W;
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    const T* yr = kWithY ? y + r * n : nullptr;
    T* o = out + r * n;
    T* so = sum_out ? sum_out + r * n : nullptr;
    vfloat sum_sq[2] = {};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = i < n_full ? W : n - i;
      const vfloat s = row_sum<T, kWithY>(xr, yr, i, c);
      if (stashed)
        store_full(stash + i, s);
      else
        store(o + i, s, c);
      if (so) store(so + i, s, c);
      sum_sq[(i / W) & 1] += s * s;
    }
    const float inv = 1.0f / std::sqrt(sum_lanes(sum_sq[0] + sum_sq[1]) / static_cast<float>(n) + eps);
    if (stashed) {
      int64_t i = 0;
      for (; i < n_full; i += W) store_full(o + i, load_full(stash + i) * inv);
      if (i < n) store(o + i, load_full(stash + i) * inv, n - i);
    } else {
      for (int64_t i = 0; i < n; i += W) {
        const int64_t c = std::min(W, n - i);
        store(o + i, load(o + i, c) * inv, c);
      }
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

}  // namespace

// Entry points, one overload per element type.
#define HRM_DEFINE_ENTRY_POINTS(T)                                                                              \
  void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n, float eps) { \
    if (y)                                                                                                      \
      add_rms_norm_rows<T, true>(x, y, out, sum_out, r0, r1, n, eps);                                           \
    else                                                                                                        \
      add_rms_norm_rows<T, false>(x, y, out, sum_out, r0, r1, n, eps);                                          \
  }                                                                                                             \
  void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n, float eps) {        \
    rms_norm_backward_rows<T>(s, dy, ds, r0, r1, n, eps);                                                       \
  }                                                                                                             \
  void swiglu(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {                                    \
    swiglu_rows<T>(gate_up, out, r0, r1, n);                                                                    \
  }                                                                                                             \
  void swiglu_backward(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, int64_t n) {        \
    swiglu_backward_rows<T>(gate_up, dy, d_gate_up, r0, r1, n);                                                 \
  }

HRM_DEFINE_ENTRY_POINTS(float)
HRM_DEFINE_ENTRY_POINTS(bf16_bits)
#undef HRM_DEFINE_ENTRY_POINTS

#if defined(__AVX512F__) && defined(__AVX512BW__)
// ---------------------------------------------------------------- SwiGLU on bf16 gates by table lookup
// A bf16 gate has 65536 possible values, so silu(gate) rounded to bf16 -- what the reference multiplies with
// `up` -- is a table (256 KiB as floats, in L2), filled once (kernels_dispatch.cpp) by this file's computing
// kernel, so both paths give bit-identical results. An AVX-512 gather replaces exp and the division, the bulk of the
// kernel's time. The backward gathers the same silu and, from a second table, the derivative.
namespace {
// table[g[k]] for 16 bf16 gates (maskz/mask forms: the plain ones start from _mm512_undefined, which GCC 12 warns
// about).
HRM_INLINE vfloat gather16(const float* table, const bf16_bits* g) {
  const __m512i index = _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g)));
  return reinterpret_cast<vfloat>(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, index, table, 4));
}
}  // namespace

void swiglu_from_table(const float* silu_table, const bf16_bits* gate_up, bf16_bits* out, int64_t r0, int64_t r1,
                       int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const bf16_bits* g = gate_up + r * 2 * n;
    const bf16_bits* u = g + n;
    bf16_bits* o = out + r * n;
    int64_t i = 0;
    for (; i + W <= n; i += W) store_full(o + i, gather16(silu_table, g + i) * load_full(u + i));
    for (; i < n; ++i) o[i] = round_bf16(silu_table[g[i]] * widen_bf16(u[i]));
  }
}

// Backward: d_up = dy * silu(g) (the forward's table) and d_gate = round(dy * up) * silu'(g) (float table).
void swiglu_backward_from_table(const float* silu_table, const float* derivative_table, const bf16_bits* gate_up,
                                const bf16_bits* dy, bf16_bits* d_gate_up, int64_t r0, int64_t r1, int64_t n) {
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
#endif

// ---------------------------------------------------------------- the multiply-add ceiling
// Independent multiply-add chains on registers only (12: more than an FMA's latency times the pipes that issue
// it), so that nothing but the FMA units limits them: the most a product on this path can reach. Returns the FLOPs.
#if defined(__AVX2__)
// One AdamATan2 step, element by element in LibTorch's op order (optim::AdamATan2::step): each line one op's rounding.
void adam_atan2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, const AdamAtan2Constants& c) {
  // lerp(m, g, w) as LibTorch computes it: m + w (g - m) for |w| < 0.5, else g + (w - 1) (g - m), one FMA.
  const bool small_weight = std::abs(c.lerp_weight) < 0.5f;
  const vfloat lerp_coeff = splat(small_weight ? c.lerp_weight : c.lerp_weight - 1.0f);
  for (int64_t i = i0; i < i1; i += W) {
    const int64_t n = std::min(W, i1 - i);
    const vfloat gi = load(g + i, n), mi = load(m + i, n);
    const vfloat decayed = load(p + i, n) * c.decay;
    const vfloat m_new = fmadd(lerp_coeff, gi - mi, small_weight ? mi : gi);
    const vfloat v_new = fmadd(gi * c.one_minus_beta2, gi, load(v + i, n) * c.beta2);
    const vfloat denom = simd::sqrt(v_new) / c.sqrt_bc2;
    store(p + i, fmadd(simd::atan2(m_new, denom), splat(c.step_size), decayed), n);
    store(m + i, m_new, n);
    store(v + i, v_new, n);
  }
}
#endif

double register_multiply_adds(int64_t iterations) {
  constexpr int kChains = 12;
  vfloat acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = splat(static_cast<float>(i));
  const vfloat m = splat(0.999999f), c = splat(1e-7f);
  for (int64_t k = 0; k < iterations; ++k)
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * m + c;  // one FMA where the path has them
  vfloat sum = {};
  for (int i = 0; i < kChains; ++i) sum += acc[i];
  volatile float sink = sum[0];  // keeps the loop
  (void)sink;
  return 2.0 * W * kChains * static_cast<double>(iterations);
}

}  // namespace hrm::nn::kernels::HRM_KERNEL_ISA
