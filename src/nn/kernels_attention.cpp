// Attention kernels: softmax attention straight from the fused QKV projection (RoPE on the fly) and its backward.
#include <algorithm>

#include "simd.h"

namespace hrm::nn::kernels::HRM_KERNEL_ISA {
namespace {
using namespace simd;

// One head's slice of a qkv row, as float, rotated (RoPE at position pos) when cos is given: [x1*c - x2*s, x2*c + x1*s]
// per half, as the reference's x*cos + rotate_half(x)*sin.
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
// W: the halves swap inside one register; head_dim a multiple of 2W: whole vectors per half), else head_row.
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
      store_full(r,
                 (v * load_full(cos + j * D) + __builtin_shuffle(v, swap) * (load_full(sin + j * D) * sign)) * scale);
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

// kQueryBlock weight rows times a matrix m: for every W-column block c of [0, cols), f(c, acc) with
//   acc[q] = sum over t < n of w[q * w_q + t * w_t] * m[t * m_stride + c .. +W],  q < kQueryBlock (4).
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
  float* kT = scratch;         // [D][S_pad]
  float* vf = kT + D * S_pad;  // [S][D_pad]; first K rows, before their transpose
  float* qs = vf + S * D_pad;  // [S4][D_pad] rotated, scaled queries (rows past S are 0)
  float* p = qs + S4 * D_pad;  // [QB][S_pad] scores, then exp(score - max)
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

#if defined(__AVX512F__)
// bf16 attention_pairs with QK^T and PV on AVX512-BF16 dot products (vdpbf16ps: two products per lane and
// instruction, twice float FMA's rate), for long sequences, where the products take half the float kernel's time.
// As FlashAttention in bf16: q (rotated, scaled) and k (rotated) rounded to bf16, scores and softmax in float, the
// unnormalised probabilities rounded to bf16 for PV, float sums, one rounding at the output. D a multiple of 16 and
// at most 64. Per pair: K packed as [D/2][S_pad][2] (one vector: 16 keys x 2 dims), V as [S_pad/2][D][2] (16 dims x
// 2 keys), queries as bf16 rows (a pair of dims, or of probabilities, is one 32-bit broadcast).
template <int DV>  // D / 16
__attribute__((target("avx512bf16"))) void attention_dot_pairs(const bf16_bits* qkv, const float* cos, const float* sin,
                                                               bf16_bits* out, float* scratch, int64_t bh0, int64_t bh1,
                                                               int64_t H, int64_t S, float scale) {
  constexpr int64_t QB = kQueryBlock, D = 16 * DV;
  const int64_t S_pad = round_up(S), S4 = (S + QB - 1) / QB * QB;
  float* rows = scratch;                                         // [S4][D]: k, v, then q as float rows
  float* p = rows + S4 * D;                                      // [QB][S_pad] scores, then exp(score - max)
  bf16_bits* kp = reinterpret_cast<bf16_bits*>(p + QB * S_pad);  // [D/2][S_pad][2]
  bf16_bits* vp = kp + D * S_pad;                                // [S_pad/2][D][2]
  bf16_bits* qb = vp + S_pad * D;                                // [S4][D]
  bf16_bits* pb = qb + S4 * D;                                   // [QB][S_pad]
  const int64_t row_stride = 3 * H * D;
  const vint lanes = lane_index();
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const bf16_bits* base = qkv + b * S * row_stride;
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, rows, D);
    for (int64_t d2 = 0; d2 < D / 2; ++d2)
      for (int64_t j = 0; j < S_pad; ++j)
        for (int64_t e = 0; e < 2; ++e)
          kp[(d2 * S_pad + j) * 2 + e] = j < S ? round_bf16(rows[j * D + 2 * d2 + e]) : bf16_bits{0};
    for (int64_t j = 0; j < S_pad; ++j)  // v is bf16 already: no rounding
      for (int64_t d = 0; d < D; ++d)
        vp[((j / 2) * D + d) * 2 + j % 2] = j < S ? base[j * row_stride + (2 * H + h) * D + d] : 0;
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale, rows, D);
    for (int64_t i = 0; i < S4 * D; ++i) qb[i] = i < S * D ? round_bf16(rows[i]) : bf16_bits{0};

    for (int64_t i0 = 0; i0 < S; i0 += QB) {
      const int64_t nq = std::min(QB, S - i0);
      const auto q_pair = [&](int64_t q, int64_t d2) HRM_LAMBDA {  // dims 2 d2, 2 d2 + 1 of query i0 + q
        int32_t pair;
        std::memcpy(&pair, qb + (i0 + q) * D + 2 * d2, sizeof pair);
        return reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      };
      vfloat row_max[QB];
      for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
      // 32 keys at a time (16 at the end): two accumulators per query, enough chains for the dot product's latency
      for (int64_t j = 0; j < S_pad; j += 2 * W) {
        const int64_t blocks = std::min<int64_t>(2, (S_pad - j) / W);
        __m512 acc[2][QB];
        for (int64_t c = 0; c < 2; ++c)
          for (int64_t q = 0; q < QB; ++q) acc[c][q] = _mm512_setzero_ps();
        for (int64_t d2 = 0; d2 < D / 2; ++d2) {
          const __m512bh k0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(kp + (d2 * S_pad + j) * 2));
          const __m512bh k1 =
              blocks == 2 ? reinterpret_cast<__m512bh>(_mm512_loadu_si512(kp + (d2 * S_pad + j + W) * 2)) : k0;
          for (int64_t q = 0; q < QB; ++q) {
            const __m512bh a = q_pair(q, d2);
            acc[0][q] = _mm512_dpbf16_ps(acc[0][q], a, k0);
            acc[1][q] = _mm512_dpbf16_ps(acc[1][q], a, k1);
          }
        }
        for (int64_t c = 0; c < blocks; ++c) {
          const vint valid = lanes < static_cast<int32_t>(S - j - c * W);  // padding keys never win
          for (int64_t q = 0; q < QB; ++q) {
            const vfloat sc = valid ? reinterpret_cast<vfloat>(acc[c][q]) : splat(-INFINITY);
            store_full(p + q * S_pad + j + c * W, sc);
            row_max[q] = sc > row_max[q] ? sc : row_max[q];
          }
        }
      }
      float inv_sum[QB];
      for (int64_t q = 0; q < QB; ++q) {
        inv_sum[q] = q < nq ? 1.0f / exp_row(p + q * S_pad, S, S_pad, max_lanes(row_max[q])) : 0.0f;
        for (int64_t j = 0; j < S_pad; j += W) {
          const vhalf rounded = to_bf16(load_full(p + q * S_pad + j));
          std::memcpy(pb + q * S_pad + j, &rounded, sizeof rounded);
        }
      }
      // PV over key pairs; with one or two vectors per query, two accumulator sets (alternate key pairs) for latency
      constexpr int SETS = DV <= 2 ? 2 : 1;
      __m512 acc[SETS][QB][DV];
#pragma GCC unroll 2
      for (int k = 0; k < SETS; ++k)
#pragma GCC unroll 4
        for (int q = 0; q < QB; ++q)
#pragma GCC unroll 4
          for (int v = 0; v < DV; ++v) acc[k][q][v] = _mm512_setzero_ps();
      for (int64_t t = 0; t < S_pad; t += 2 * SETS) {  // S_pad is a multiple of 16
#pragma GCC unroll 2
        for (int k = 0; k < SETS; ++k) {
          __m512bh vv[DV];
#pragma GCC unroll 4
          for (int v = 0; v < DV; ++v)
            vv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(vp + ((t / 2 + k) * D + 16 * v) * 2));
#pragma GCC unroll 4
          for (int q = 0; q < QB; ++q) {
            int32_t pair;
            std::memcpy(&pair, pb + q * S_pad + t + 2 * k, sizeof pair);
            const __m512bh pq = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
#pragma GCC unroll 4
            for (int v = 0; v < DV; ++v) acc[k][q][v] = _mm512_dpbf16_ps(acc[k][q][v], pq, vv[v]);
          }
        }
      }
#pragma GCC unroll 4
      for (int q = 0; q < QB; ++q)  // constant indices: acc stays in registers
#pragma GCC unroll 4
        for (int v = 0; v < DV; ++v) {
          __m512 sum = acc[0][q][v];
          if constexpr (SETS == 2) sum = _mm512_add_ps(sum, acc[SETS - 1][q][v]);
          if (q < nq)
            store_full(out + ((b * S + i0 + q) * H + h) * D + 16 * v, reinterpret_cast<vfloat>(sum) * inv_sum[q]);
        }
    }
  }
}
#endif

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
  float* Qs = scratch;             // [S4][D_pad] rotated q * scale
  float* K = Qs + S4 * D_pad;      // [S4][D_pad] rotated k
  float* dO = K + S4 * D_pad;      // [S4][D_pad]
  float* kT = dO + S4 * D_pad;     // [D][S_pad]
  float* vT = kT + D * S_pad;      // [D][S_pad]
  float* P = vT + D * S_pad;       // [S4][S_pad] probabilities, then dS
  float* dP = P + S4 * S_pad;      // [S4][S_pad]
  float* grad = dP + S4 * S_pad;   // [S4][D_pad]: dV, then dQ, then dK
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
      if (i < S)
        softmax_row(P + i * S_pad, S, S_pad);
      else
        for (int64_t j = 0; j < S_pad; ++j) P[i * S_pad + j] = 0.0f;
    }
    const auto store_grad = [&](int64_t slot, bool rotate)
                                HRM_LAMBDA {  // grad rows -> d_qkv slice `slot` (0 q, 1 k, 2 v)
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
                                    for (int64_t d = 0; d < D; d += W)
                                      store(dst + d, load_full(g + d), std::min(W, D - d));
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

}  // namespace

int64_t attention_backward_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  return 4 * S4 * round_up(D) + 2 * D * round_up(S) + 2 * S4 * round_up(S) + round_up(D);
}

int64_t attention_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
  return D * round_up(S) + S * round_up(D) + S4 * round_up(D) + kQueryBlock * round_up(S);
}

#if defined(__AVX512F__)
int64_t attention_dot_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock, S_pad = round_up(S);
  return S4 * D + kQueryBlock * S_pad + (2 * D * S_pad + S4 * D + kQueryBlock * S_pad + 1) / 2;
}

void attention_dot(const bf16_bits* qkv, const float* cos, const float* sin, bf16_bits* out, float* scratch,
                   int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale) {
  switch (D) {
    case 16: return attention_dot_pairs<1>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, scale);
    case 32: return attention_dot_pairs<2>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, scale);
    case 48: return attention_dot_pairs<3>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, scale);
    case 64: return attention_dot_pairs<4>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, scale);
  }
}
#endif

// Entry points, one overload per element type.
#define HRM_DEFINE_ENTRY_POINTS(T)                                                                                   \
  void attention(const T* qkv, const float* cos, const float* sin, T* out, float* scratch, int64_t bh0, int64_t bh1, \
                 int64_t H, int64_t S, int64_t D, float scale) {                                                     \
    attention_pairs<T>(qkv, cos, sin, out, scratch, bh0, bh1, H, S, D, scale);                                       \
  }                                                                                                                  \
  void attention_backward(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv, float* scratch, \
                          int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale) {                  \
    attention_backward_pairs<T>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, D, scale);                      \
  }

HRM_DEFINE_ENTRY_POINTS(float)
HRM_DEFINE_ENTRY_POINTS(bf16_bits)
#undef HRM_DEFINE_ENTRY_POINTS

}  // namespace hrm::nn::kernels::HRM_KERNEL_ISA
