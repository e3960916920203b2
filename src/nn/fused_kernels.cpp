// Fused elementwise kernels on raw float / bf16 buffers (plain C++, no LibTorch: this TU compiles in a second).
// Arithmetic is written on 16-lane GCC vector types, which the compiler lowers to one AVX-512 register, two AVX2
// registers or four SSE registers; target_clones compiles each entry point for those three targets and picks one at
// load time, so the library stays portable. (Auto-vectorisation of the scalar loops was tried first: GCC left the
// bf16 loops scalar, and they ran 3x slower than LibTorch's own kernels.)
#include "fused_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// x86-64-v4 (AVX-512 F+BW+VL+DQ) rather than plain avx512f: BW turns the float->bf16 narrowing into one vpermi2w
// instead of two packs, a permute and a spill.
#define HRM_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#define HRM_SILU_TABLE 1
#include <immintrin.h>
#else
#define HRM_SILU_TABLE 0
#define HRM_MULTIVERSION
#endif
#define HRM_INLINE inline __attribute__((always_inline))
// Lambdas too: a lambda left out of line would be compiled for the baseline target, not for its caller's clone.
#define HRM_LAMBDA __attribute__((always_inline))

namespace hrm::nn::kernels {
namespace {

constexpr int64_t W = 16;  // lanes
typedef float vfloat __attribute__((vector_size(64)));
typedef int32_t vint __attribute__((vector_size(64)));
typedef uint32_t vuint __attribute__((vector_size(64)));
typedef uint16_t vhalf __attribute__((vector_size(32)));

HRM_INLINE vfloat splat(float v) { return vfloat{} + v; }

// ---------------------------------------------------------------- loads and stores of 16 elements
// float <-> bfloat16 (bits): round to nearest even, NaN stays NaN -- as c10::BFloat16.
HRM_INLINE vfloat from_bf16(vhalf h) { return reinterpret_cast<vfloat>(__builtin_convertvector(h, vuint) << 16); }
HRM_INLINE vhalf to_bf16(vfloat v) {
  const vuint bits = reinterpret_cast<vuint>(v);
  vuint rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  rounded = (v != v) ? vuint{} + 0x7FC0u : rounded;
  return __builtin_convertvector(rounded, vhalf);
}

HRM_INLINE vfloat load_full(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
HRM_INLINE vfloat load_full(const bf16_bits* p) {
  vhalf h;
  std::memcpy(&h, p, sizeof h);
  return from_bf16(h);
}
HRM_INLINE void store_full(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
HRM_INLINE void store_full(bf16_bits* p, vfloat v) {
  const vhalf h = to_bf16(v);
  std::memcpy(p, &h, sizeof h);
}

HRM_INLINE vint lane_index() {
  vint v;
  for (int32_t i = 0; i < W; ++i) v[i] = i;
  return v;
}

// `count` (<= 16) elements from p; the other lanes hold `fill`.
template <class T>
HRM_INLINE vfloat load(const T* p, int64_t count, float fill = 0.0f) {
  if (count == W) return load_full(p);
  T buf[W] = {};
  std::memcpy(buf, p, sizeof(T) * count);
  return lane_index() < static_cast<int32_t>(count) ? load_full(buf) : splat(fill);
}
template <class T>
HRM_INLINE void store(T* p, vfloat v, int64_t count) {
  if (count == W) return store_full(p, v);
  T buf[W];
  store_full(buf, v);
  std::memcpy(p, buf, sizeof(T) * count);
}

// v rounded to T's precision (what storing and reloading gives).
template <class T>
HRM_INLINE vfloat round_to(vfloat v) {
  if constexpr (std::is_same_v<T, float>) return v;
  else return from_bf16(to_bf16(v));
}

// Horizontal sum and max as a tree of lane swaps (a scalar loop over the lanes is a 16-long dependency chain).
HRM_INLINE float sum_lanes(vfloat v) {
  const vint lanes = lane_index();
  for (int32_t k = W / 2; k > 0; k /= 2) v += __builtin_shuffle(v, lanes ^ k);
  return v[0];
}
HRM_INLINE float max_lanes(vfloat v) {
  const vint lanes = lane_index();
  for (int32_t k = W / 2; k > 0; k /= 2) {
    const vfloat o = __builtin_shuffle(v, lanes ^ k);
    v = o > v ? o : v;
  }
  return v[0];
}

// exp by range reduction to [-ln2/2, ln2/2] and a degree-6 polynomial (Cephes expf, ~1 ulp). NaN propagates;
// inputs are clamped to [-87.3, 88] so 2^n stays a normal float.
HRM_INLINE vfloat exp(vfloat x) {
  x = x < -87.3f ? splat(-87.3f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  const vfloat n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2) via 1.5 * 2^23
  const vfloat r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vfloat p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vint e = (__builtin_convertvector(n, vint) + 127) << 23;
  return p * reinterpret_cast<vfloat>(e);
}

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
      if (stashed) store_full(stash + i, s);
      else store(o + i, s, c);
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

// Single elements (head_dim-sized loops and row tails: scalar code). Same rounding as to_bf16.
HRM_INLINE float widen_bf16(bf16_bits h) {
  const uint32_t b = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
HRM_INLINE bf16_bits round_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return f != f ? bf16_bits{0x7FC0} : static_cast<bf16_bits>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}
template <class T>
HRM_INLINE float load1(const T* p, int64_t i) {
  if constexpr (std::is_same_v<T, float>) return p[i];
  else return widen_bf16(p[i]);
}
HRM_INLINE int64_t round_up(int64_t n) { return (n + W - 1) / W * W; }

// One head's slice of a qkv row, as float, rotated (RoPE at position pos) when cos is given: [x1*c - x2*s, x2*c + x1*s] per half, as the reference's x*cos + rotate_half(x)*sin.
template <class T>
HRM_INLINE void head_row(const T* src, const float* cos, const float* sin, int64_t pos, int64_t D, float* dst) {
  if (!cos) {
    for (int64_t d = 0; d < D; ++d) dst[d] = load1(src, d);
    return;
  }
  const int64_t half = D / 2;
  const float* c = cos + pos * D;
  const float* s = sin + pos * D;
  for (int64_t d = 0; d < half; ++d) {
    const float x1 = load1(src, d), x2 = load1(src, d + half);
    dst[d] = x1 * c[d] - x2 * s[d];
    dst[d + half] = x2 * c[d] + x1 * s[d];
  }
}

// Rows [0, n) of one head's slice (row j at src + j * row_stride) as float rows dst[j * D_pad ..], rotated by RoPE
// at position j when cos is given, times `scale`; pad lanes are 0. Whole vectors when the layout allows (head_dim
// 16: the halves swap inside one register; head_dim a multiple of 32: whole vectors per half), else head_row.
template <class T>
HRM_INLINE void head_rows(const T* src, int64_t row_stride, const float* cos, const float* sin, int64_t n, int64_t D,
                          float scale, float* dst, int64_t D_pad) {
  const int64_t half = D / 2;
  const bool swap16 = cos && D == W, halves = !cos || half % W == 0;
  if (!swap16 && !halves) {
    for (int64_t j = 0; j < n; ++j) {
      float* r = dst + j * D_pad;
      head_row(src + j * row_stride, cos, sin, j, D, r);
      for (int64_t d = 0; d < D_pad; ++d) r[d] = d < D ? r[d] * scale : 0.0f;
    }
    return;
  }
  const vint lanes = lane_index();
  const vint swap = (lanes + static_cast<int32_t>(W / 2)) & static_cast<int32_t>(W - 1);
  const vfloat sign = lanes < static_cast<int32_t>(W / 2) ? splat(-1.0f) : splat(1.0f);
  for (int64_t j = 0; j < n; ++j) {
    const T* x = src + j * row_stride;
    float* r = dst + j * D_pad;
    if (swap16) {  // [x1 | x2] -> [x1 c - x2 s | x2 c + x1 s] with c, s duplicated across the halves
      const vfloat v = load_full(x);
      store_full(r, (v * load_full(cos + j * D) + __builtin_shuffle(v, swap) * (load_full(sin + j * D) * sign)) * scale);
    } else if (cos) {
      for (int64_t d = 0; d < half; d += W) {
        const vfloat x1 = load_full(x + d), x2 = load_full(x + d + half);
        const vfloat c = load_full(cos + j * D + d), sn = load_full(sin + j * D + d);
        store_full(r + d, (x1 * c - x2 * sn) * scale);
        store_full(r + d + half, (x2 * c + x1 * sn) * scale);
      }
    } else {
      for (int64_t d = 0; d < D; d += W) store(r + d, load(x + d, std::min(W, D - d)) * scale, W);
    }
  }
}

// Transpose of rows [n][D_pad] into cols [D][n_pad] (columns past n are 0).
HRM_INLINE void transpose_rows(const float* rows, int64_t n, int64_t D, int64_t D_pad, float* cols, int64_t n_pad) {
  for (int64_t d = 0; d < D; ++d) {
    float* c = cols + d * n_pad;
    for (int64_t j = 0; j < n; ++j) c[j] = rows[j * D_pad + d];
    for (int64_t j = n; j < n_pad; ++j) c[j] = 0.0f;
  }
}

constexpr int64_t kQueryBlock = 4;

// kQueryBlock weight rows times a matrix m: for every 16-column block c of [0, cols), f(c, acc) with
//   acc[q] = sum over t < n of w[q * w_q + t * w_t] * m[t * m_stride + c .. +16],  q < kQueryBlock (4).
// Each load of m feeds four FMA chains (one per weight row); two column blocks at a time, or even and odd t for a
// last single block, make eight independent chains, enough to hide the FMA latency on two FMA ports.
template <class F>
HRM_INLINE void mix4(const float* w, int64_t w_q, int64_t w_t, const float* m, int64_t m_stride, int64_t n,
                     int64_t cols, F&& f) {
  int64_t c = 0;
  for (; c + 2 * W <= cols; c += 2 * W) {
    vfloat a[2][kQueryBlock] = {};
    for (int64_t t = 0; t < n; ++t) {
      const vfloat m0 = load_full(m + t * m_stride + c), m1 = load_full(m + t * m_stride + c + W);
      const float* wt = w + t * w_t;
      for (int64_t q = 0; q < kQueryBlock; ++q) {
        a[0][q] += wt[q * w_q] * m0;
        a[1][q] += wt[q * w_q] * m1;
      }
    }
    f(c, a[0]);
    f(c + W, a[1]);
  }
  if (c < cols) {
    vfloat a[2][kQueryBlock] = {};
    int64_t t = 0;
    for (; t + 1 < n; t += 2) {
      const vfloat m0 = load_full(m + t * m_stride + c), m1 = load_full(m + (t + 1) * m_stride + c);
      const float* wt = w + t * w_t;
      for (int64_t q = 0; q < kQueryBlock; ++q) {
        a[0][q] += wt[q * w_q] * m0;
        a[1][q] += wt[q * w_q + w_t] * m1;
      }
    }
    if (t < n) {
      const vfloat m0 = load_full(m + t * m_stride + c);
      for (int64_t q = 0; q < kQueryBlock; ++q) a[0][q] += w[t * w_t + q * w_q] * m0;
    }
    for (int64_t q = 0; q < kQueryBlock; ++q) a[0][q] += a[1][q];
    f(c, a[0]);
  }
}

// exp(p[j] - row_max) in place over a row of S_pad (lanes past S become 0); returns the sum.
HRM_INLINE float exp_row(float* p, int64_t S, int64_t S_pad, float row_max) {
  vfloat sum{};
  for (int64_t j = 0; j < S_pad; j += W) {
    const vfloat e = lane_index() < static_cast<int32_t>(S - j) ? exp(load_full(p + j) - row_max) : splat(0.0f);
    store_full(p + j, e);
    sum += e;
  }
  return sum_lanes(sum);
}

// Softmax of row p[0..S) in place (padding lanes up to S_pad hold -inf and become 0).
HRM_INLINE void softmax_row(float* p, int64_t S, int64_t S_pad) {
  vfloat m = splat(-INFINITY);
  for (int64_t j = 0; j < S_pad; j += W) {
    const vfloat v = load_full(p + j);
    m = v > m ? v : m;
  }
  const float inv = 1.0f / exp_row(p, S, S_pad, max_lanes(m));
  for (int64_t j = 0; j < S_pad; j += W) store_full(p + j, load_full(p + j) * inv);
}

// Softmax attention for (batch*head) pairs [bh0, bh1) straight from the fused projection qkv [B, S, 3H, D]
// (RoPE applied on the fly), in float with one rounding at the output (as SDPA / FlashAttention), written as
// out [B, S, H, D] -- the layout the output projection reads. scratch: attention_scratch_floats(S, D) floats.
// Per pair: queries (rotated, scaled) to float [S4][D_pad], K rotated and transposed to float [D][S_pad], V to
// float [S][D_pad] (in L1/L2 for HRM's sequences). Queries go four at a time: each load of K or V feeds four
// independent FMA chains, one per query. The row maxima are taken while the scores are stored, and the softmax
// normalisation is applied to the D-wide output instead of the S-wide probabilities.
template <class T>
HRM_INLINE void attention_pairs(const T* qkv, const float* cos, const float* sin, T* out, float* scratch, int64_t bh0,
                                int64_t bh1, int64_t H, int64_t S, int64_t D, float scale) {
  constexpr int64_t QB = kQueryBlock;
  const int64_t S_pad = round_up(S), D_pad = round_up(D), S4 = (S + QB - 1) / QB * QB;
  float* kT = scratch;              // [D][S_pad]
  float* vf = kT + D * S_pad;       // [S][D_pad]; first K rows, before their transpose
  float* qs = vf + S * D_pad;       // [S4][D_pad] rotated, scaled queries (rows past S are 0)
  float* p = qs + S4 * D_pad;       // [QB][S_pad] scores, then exp(score - max)
  const int64_t row_stride = 3 * H * D;
  const vint lanes = lane_index();
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* base = qkv + b * S * row_stride;
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, vf, D_pad);
    transpose_rows(vf, S, D, D_pad, kT, S_pad);
    head_rows<T>(base + (2 * H + h) * D, row_stride, nullptr, nullptr, S, D, 1.0f, vf, D_pad);
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale, qs, D_pad);
    for (int64_t i = S * D_pad; i < S4 * D_pad; ++i) qs[i] = 0.0f;

    for (int64_t i0 = 0; i0 < S; i0 += QB) {
      const int64_t nq = std::min(QB, S - i0);
      vfloat row_max[QB];
      for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
      mix4(qs + i0 * D_pad, D_pad, 1, kT, S_pad, D, S_pad, [&](int64_t j, const vfloat* scores) HRM_LAMBDA {
        const vint valid = lanes < static_cast<int32_t>(S - j);  // padding keys never win
        for (int64_t q = 0; q < QB; ++q) {
          const vfloat sc = valid ? scores[q] : splat(-INFINITY);
          store_full(p + q * S_pad + j, sc);
          row_max[q] = sc > row_max[q] ? sc : row_max[q];
        }
      });
      float inv_sum[QB];
      for (int64_t q = 0; q < QB; ++q)
        inv_sum[q] = q < nq ? 1.0f / exp_row(p + q * S_pad, S, S_pad, max_lanes(row_max[q])) : 0.0f;
      mix4(p, S_pad, 1, vf, D_pad, S, D_pad, [&](int64_t d, const vfloat* acc) HRM_LAMBDA {
        for (int64_t q = 0; q < nq; ++q)
          store(out + ((b * S + i0 + q) * H + h) * D + d, acc[q] * inv_sum[q], std::min(W, D - d));
      });
    }
  }
}

// Gradient of attention_pairs with respect to qkv, for (batch*head) pairs [bh0, bh1): dout [B, S, H, D] ->
// d_qkv [B, S, 3H, D] (each pair writes its own q, k and v slices). Recomputes the probabilities P (nothing is
// saved from the forward but qkv), then, in float:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(P * dP)),  dQ = scale dS K,  dK = scale dS^T Q,
// and rotates dQ, dK back (the transpose of RoPE's rotation). scratch: attention_backward_scratch_floats(S, D).
template <class T>
HRM_INLINE void attention_backward_pairs(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv,
                                         float* scratch, int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D,
                                         float scale) {
  constexpr int64_t QB = kQueryBlock;
  const int64_t S_pad = round_up(S), D_pad = round_up(D), S4 = (S + QB - 1) / QB * QB;
  float* Qs = scratch;          // [S4][D_pad] rotated q * scale
  float* K = Qs + S4 * D_pad;   // [S4][D_pad] rotated k
  float* dO = K + S4 * D_pad;   // [S4][D_pad]
  float* kT = dO + S4 * D_pad;  // [D][S_pad]
  float* vT = kT + D * S_pad;   // [D][S_pad]
  float* P = vT + D * S_pad;    // [S4][S_pad] probabilities, then dS
  float* dP = P + S4 * S_pad;   // [S4][S_pad]
  float* grad = dP + S4 * S_pad;  // [S4][D_pad]: dV, then dQ, then dK
  float* row = grad + S4 * D_pad;  // [D_pad]
  const int64_t row_stride = 3 * H * D;
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* base = qkv + b * S * row_stride;
    T* d_base = d_qkv + b * S * row_stride;
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale, Qs, D_pad);
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, K, D_pad);
    transpose_rows(K, S, D, D_pad, kT, S_pad);
    head_rows<T>(base + (2 * H + h) * D, row_stride, nullptr, nullptr, S, D, 1.0f, grad, D_pad);  // V, for now
    transpose_rows(grad, S, D, D_pad, vT, S_pad);
    head_rows<T>(dout + (b * S * H + h) * D, H * D, nullptr, nullptr, S, D, 1.0f, dO, D_pad);
    for (int64_t i = S * D_pad; i < S4 * D_pad; ++i) Qs[i] = K[i] = dO[i] = 0.0f;
    // P (rows past S stay 0) and dP = dO V^T.
    for (int64_t i0 = 0; i0 < S4; i0 += QB) {
      mix4(Qs + i0 * D_pad, D_pad, 1, kT, S_pad, D, S_pad, [&](int64_t j, const vfloat* scores) HRM_LAMBDA {
        const vint valid = lane_index() < static_cast<int32_t>(S - j);
        for (int64_t q = 0; q < QB; ++q) store_full(P + (i0 + q) * S_pad + j, valid ? scores[q] : splat(-INFINITY));
      });
      mix4(dO + i0 * D_pad, D_pad, 1, vT, S_pad, D, S_pad, [&](int64_t j, const vfloat* dps) HRM_LAMBDA {
        for (int64_t q = 0; q < QB; ++q) store_full(dP + (i0 + q) * S_pad + j, dps[q]);
      });
    }
    for (int64_t i = 0; i < S4; ++i) {
      if (i < S) softmax_row(P + i * S_pad, S, S_pad);
      else for (int64_t j = 0; j < S_pad; ++j) P[i * S_pad + j] = 0.0f;
    }
    const auto store_grad = [&](int64_t slot, bool rotate) HRM_LAMBDA {  // grad rows -> d_qkv slice `slot` (0 q, 1 k, 2 v)
      for (int64_t j = 0; j < S; ++j) {
        const float* g = grad + j * D_pad;
        T* dst = d_base + j * row_stride + (slot * H + h) * D;
        if (rotate && cos) {
          // y1 = x1 c - x2 s, y2 = x2 c + x1 s  =>  dx1 = g1 c + g2 s, dx2 = g2 c - g1 s
          const int64_t half = D / 2;
          const float* c = cos + j * D;
          const float* sn = sin + j * D;
          for (int64_t d = 0; d < half; ++d) {
            row[d] = g[d] * c[d] + g[d + half] * sn[d];
            row[d + half] = g[d + half] * c[d] - g[d] * sn[d];
          }
          g = row;
        }
        for (int64_t d = 0; d < D; d += W) store(dst + d, load_full(g + d), std::min(W, D - d));
      }
    };
    // grad[r] = factor * sum_t w[r * w_q + t * w_t] * m[t], for all rows r < S4 (w: P or dS, as is or transposed)
    const auto weighted_rows = [&](const float* w, int64_t w_q, int64_t w_t, const float* m, float factor) HRM_LAMBDA {
      for (int64_t r0 = 0; r0 < S4; r0 += QB)
        mix4(w + r0 * w_q, w_q, w_t, m, D_pad, S, D_pad, [&](int64_t d, const vfloat* acc) HRM_LAMBDA {
          for (int64_t q = 0; q < QB; ++q) store_full(grad + (r0 + q) * D_pad + d, acc[q] * factor);
        });
    };
    weighted_rows(P, 1, S_pad, dO, 1.0f);  // dV[j] = sum_i P[i][j] dO[i]
    store_grad(2, false);
    // dS = P * (dP - sum_j P dP), in place of P
    for (int64_t i = 0; i < S; ++i) {
      float* pi = P + i * S_pad;
      const float* dpi = dP + i * S_pad;
      vfloat dot{};
      for (int64_t j = 0; j < S_pad; j += W) dot += load_full(pi + j) * load_full(dpi + j);
      const float di = sum_lanes(dot);
      for (int64_t j = 0; j < S_pad; j += W) store_full(pi + j, load_full(pi + j) * (load_full(dpi + j) - di));
    }
    weighted_rows(P, S_pad, 1, K, scale);  // dQ[i] = scale * sum_j dS[i][j] K[j]
    store_grad(0, true);
    weighted_rows(P, 1, S_pad, Qs, 1.0f);  // dK[j] = sum_i dS[i][j] (scale * Q[i])
    store_grad(1, true);
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

int64_t attention_backward_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  return 4 * S4 * round_up(D) + 2 * D * round_up(S) + 2 * S4 * round_up(S) + round_up(D);
}

int64_t attention_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  return D * round_up(S) + S * round_up(D) + S4 * round_up(D) + kQueryBlock * round_up(S);
}

// Multiversioned entry points, one overload per element type (target_clones does not apply to templates).
#define HRM_DEFINE_ENTRY_POINTS(T)                                                                                 \
  HRM_MULTIVERSION void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1,           \
                                     int64_t n, float eps) {                                                      \
    add_rms_norm_rows<T>(x, y, out, sum_out, r0, r1, n, eps);                                                     \
  }                                                                                                               \
  HRM_MULTIVERSION void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n,       \
                                          float eps) {                                                            \
    rms_norm_backward_rows<T>(s, dy, ds, r0, r1, n, eps);                                                         \
  }                                                                                                               \
  HRM_MULTIVERSION void swiglu_computed(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {            \
    swiglu_rows<T>(gate_up, out, r0, r1, n);                                                                      \
  }                                                                                                               \
  HRM_MULTIVERSION void swiglu_backward_computed(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0,          \
                                                 int64_t r1, int64_t n) {                                         \
    swiglu_backward_rows<T>(gate_up, dy, d_gate_up, r0, r1, n);                                                   \
  }                                                                                                               \
  HRM_MULTIVERSION void attention(const T* qkv, const float* cos, const float* sin, T* out, float* scratch,       \
                                  int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale) {       \
    attention_pairs<T>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, D, scale);                                   \
  }                                                                                                               \
  HRM_MULTIVERSION void attention_backward(const T* qkv, const float* cos, const float* sin, const T* dout,        \
                                           T* d_qkv, float* scratch, int64_t bh0, int64_t bh1, int64_t H,         \
                                           int64_t S, int64_t D, float scale) {                                   \
    attention_backward_pairs<T>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, D, scale);                   \
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
