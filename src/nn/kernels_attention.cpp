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
// Query rows per block of the float kernels: 2 x kFloatRows accumulators plus three operands fill the registers
// (16 ymm with AVX2, 32 zmm with AVX-512) without spilling; more independent FMA chains than the latency needs.
constexpr int64_t kFloatRows = W == 8 ? 6 : W == 16 ? 8 : kQueryBlock;

// QB weight rows times a matrix m: for every W-column block c of [0, cols), f(c, acc) with
//   acc[q] = sum over t < n of w[q * w_q + t * w_t] * m[t * m_stride + c .. +W],  q < QB.
// Each load of m feeds QB FMA chains (one per weight row); two column blocks at a time, or even and odd t for a
// last single block, make 2 QB independent chains to hide the FMA latency on two FMA ports.
template <int64_t QB = kFloatRows, class F>
HRM_INLINE void mix_rows(const float* w, int64_t w_q, int64_t w_t, const float* m, int64_t m_stride, int64_t n,
                         int64_t cols, F&& f) {
  int64_t c = 0;
  for (; c + 2 * W <= cols; c += 2 * W) {
    vfloat a[2][QB] = {};
    for (int64_t t = 0; t < n; ++t) {
      const vfloat m0 = load_full(m + t * m_stride + c), m1 = load_full(m + t * m_stride + c + W);
      const float* wt = w + t * w_t;
      for (int64_t q = 0; q < QB; ++q) {
        a[0][q] += wt[q * w_q] * m0;
        a[1][q] += wt[q * w_q] * m1;
      }
    }
    f(c, a[0]);
    f(c + W, a[1]);
  }
  if (c < cols) {
    vfloat a[2][QB] = {};
    int64_t t = 0;
    for (; t + 1 < n; t += 2) {
      const vfloat m0 = load_full(m + t * m_stride + c), m1 = load_full(m + (t + 1) * m_stride + c);
      const float* wt = w + t * w_t;
      for (int64_t q = 0; q < QB; ++q) {
        a[0][q] += wt[q * w_q] * m0;
        a[1][q] += wt[q * w_q + w_t] * m1;
      }
    }
    if (t < n) {
      const vfloat m0 = load_full(m + t * m_stride + c);
      for (int64_t q = 0; q < QB; ++q) a[0][q] += w[t * w_t + q * w_q] * m0;
    }
    for (int64_t q = 0; q < QB; ++q) a[0][q] += a[1][q];
    f(c, a[0]);
  }
}

// A block of keys (one vector) of QB query rows' scores into rows p[q * S_pad + j ..], padding keys (j + lane >= S)
// as -inf so that they never win; row_max[q] keeps each row's running maximum.
template <int64_t QB, class V>
HRM_INLINE void keep_scores(const V* acc, int64_t j, int64_t S, float* p, int64_t S_pad, vfloat* row_max) {
  const vint valid = lane_index() < static_cast<int32_t>(S - j);
  for (int64_t q = 0; q < QB; ++q) {
    const vfloat sc = valid ? (vfloat)acc[q] : splat(-INFINITY);
    store_full(p + q * S_pad + j, sc);
    row_max[q] = sc > row_max[q] ? sc : row_max[q];
  }
}

// The float kernels' scores are in base 2 (log2(e) folded into the query scale, kLog2e): their softmax takes 2^x of a
// score minus its row's maximum (simd::exp2_nonpositive, ~1 ulp). The bf16 dot-product kernels keep natural scores
// (ExpNonPositive).
constexpr float kLog2e = 1.44269504088896341f;
struct Exp2OfBase2Scores {
  HRM_INLINE vfloat operator()(vfloat x) const { return exp2_nonpositive(x); }
};

// The softmax numerators exp_of(score - its row's maximum) for QB rows of scores p[q * S_pad ..] (2^x by default, for
// the float kernels' base-2 scores), handed to put(q, j, e) one vector at a time (lanes past S and rows from n on:
// 0); inv_sum[q] = 1 / row q's sum (0 from row n on). Rows go side by side (independent chains) in groups of G, as
// many as the registers hold beside exp's constants: with 16 registers (AVX2, generic) one row at a time, as more
// spill the sums (AVX2 float32 at 900 tokens: 6 rows 6% slower); with 32 (AVX-512) four.
template <int64_t QB, class Exp = Exp2OfBase2Scores, class Put>
HRM_INLINE void exp_rows(const float* p, int64_t S, int64_t S_pad, const vfloat* row_max, int64_t n, float* inv_sum,
                         Put&& put, Exp exp_of = {}) {
  constexpr int64_t G = W <= 8 ? 1 : std::min<int64_t>(QB, 4);
  static_assert(QB % G == 0, "rows in whole groups");
  const vint lanes = lane_index();
  for (int64_t g0 = 0; g0 < QB; g0 += G) {
    float top[G];
    int32_t len[G];
    vfloat sum[G];
    for (int64_t q = 0; q < G; ++q) {
      top[q] = g0 + q < n ? max_lanes(row_max[g0 + q]) : 0.0f;
      len[q] = static_cast<int32_t>(g0 + q < n ? S : 0);
      sum[q] = splat(0.0f);
    }
    const float* pg = p + g0 * S_pad;
    int64_t j = 0;
    if (g0 + G <= n)  // whole vectors of every row: no lane mask
      for (; j + W <= S; j += W) {
#pragma GCC unroll 8
        for (int64_t q = 0; q < G; ++q) {
          const vfloat e = exp_of(load_full(pg + q * S_pad + j) - top[q]);
          sum[q] += e;
          put(g0 + q, j, e);
        }
      }
    for (; j < S_pad; j += W) {
#pragma GCC unroll 8
      for (int64_t q = 0; q < G; ++q) {
        const vint valid = lanes < len[q] - static_cast<int32_t>(j);
        const vfloat e = valid ? exp_of(load_full(pg + q * S_pad + j) - top[q]) : splat(0.0f);
        sum[q] += e;
        put(g0 + q, j, e);
      }
    }
    for (int64_t q = 0; q < G; ++q) inv_sum[g0 + q] = g0 + q < n ? 1.0f / sum_lanes(sum[q]) : 0.0f;
  }
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
  constexpr int64_t QB = kFloatRows;
  const int64_t S_pad = round_up(S), D_pad = round_up(D), S4 = (S + QB - 1) / QB * QB;
  float* kT = scratch;         // [D][S_pad]
  float* vf = kT + D * S_pad;  // [S][D_pad]; first K rows, before their transpose
  float* qs = vf + S * D_pad;  // [S4][D_pad] rotated, scaled queries (rows past S are 0)
  float* p = qs + S4 * D_pad;  // [QB][S_pad] scores, then exp(score - max)
  const int64_t row_stride = 3 * H * D;
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* base = qkv + b * S * row_stride;
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, vf, D_pad);
    transpose_rows(vf, S, D, D_pad, kT, S_pad);
    head_rows<T>(base + (2 * H + h) * D, row_stride, nullptr, nullptr, S, D, 1.0f, vf, D_pad);
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale * kLog2e, qs, D_pad);  // base-2 scores
    for (int64_t i = S * D_pad; i < S4 * D_pad; ++i) qs[i] = 0.0f;

    for (int64_t i0 = 0; i0 < S; i0 += QB) {
      const int64_t nq = std::min(QB, S - i0);
      vfloat row_max[QB];
      for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
      mix_rows(qs + i0 * D_pad, D_pad, 1, kT, S_pad, D, S_pad,
               [&](int64_t j, const vfloat* scores) HRM_LAMBDA { keep_scores<QB>(scores, j, S, p, S_pad, row_max); });
      float inv_sum[QB];
      exp_rows<QB>(p, S, S_pad, row_max, nq, inv_sum,
                   [&](int64_t q, int64_t j, vfloat e) HRM_LAMBDA { store_full(p + q * S_pad + j, e); });
      mix_rows(p, S_pad, 1, vf, D_pad, S, D_pad, [&](int64_t d, const vfloat* acc) HRM_LAMBDA {
        for (int64_t q = 0; q < nq; ++q)
          store(out + ((b * S + i0 + q) * H + h) * D + d, acc[q] * inv_sum[q], std::min(W, D - d));
      });
    }
  }
}

// Query rows per block of the backward: P and dP of one block ([rows][S_pad] each) take at most 256 KiB, so that
// they stay in L2 while the five products read them; short sequences are one block.
// A multiple of QB, the kernel's rows per block.
template <int64_t QB>
HRM_INLINE int64_t backward_query_block(int64_t S) {
  const int64_t S4 = (S + QB - 1) / QB * QB;
  return std::min(S4, std::max(QB, 32768 / round_up(S) / QB * QB));
}

// Rows [j0, j0 + n) of one head's gradient (g: row j0 first, rows g_stride apart) into d_qkv (dst: row 0 of the
// head's q, k or v slice, rows row_stride apart), rotated back when cos is given (the transpose of RoPE's rotation:
// y1 = x1 c - x2 s, y2 = x2 c + x1 s  =>  dx1 = g1 c + g2 s, dx2 = g2 c - g1 s).
template <class T>
HRM_INLINE void store_head_grad(const float* g, int64_t g_stride, int64_t j0, int64_t n, const float* cos,
                                const float* sin, T* dst, int64_t row_stride, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t j = j0; j < j0 + n; ++j, g += g_stride) {
    T* o = dst + j * row_stride;
    if (!cos) {
      for (int64_t d = 0; d < D; d += W) store(o + d, load(g + d, std::min(W, D - d)), std::min(W, D - d));
      continue;
    }
    const float* c = cos + j * D;
    const float* sn = sin + j * D;
    for (int64_t d = 0; d < half; ++d) {
      const float g1 = g[d], g2 = g[d + half];
      store1(o, d, g1 * c[d] + g2 * sn[d]);
      store1(o, d + half, g2 * c[d] - g1 * sn[d]);
    }
  }
}

#if defined(__AVX512F__)
// ---- bf16 attention on AVX512-BF16 dot products (head widths 16-64). vdpbf16ps adds two products per lane
// (acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1]) at twice float FMA's rate: one operand is a bf16 pair broadcast to every
// lane, the other 16 output columns of pairs. As FlashAttention in bf16: every product's inputs rounded to bf16
// (q, k, the probabilities P and their gradient dS), scores, softmax and every sum in float, one rounding at the
// output.
#define HRM_DOT inline __attribute__((target("avx512bf16"), always_inline))

// exp(x) for x <= 0 (a score minus its row's maximum) where the probabilities feed bf16 products: 2^n by vscalefps
// and a degree-5 polynomial on [-ln2/2, ln2/2] through Chebyshev nodes, half simd::exp's instructions. Relative
// error <= 4.6e-7 over [-87, 0] (simd::exp's ~1e-7; bf16 rounding of the probabilities: 2^-9); 0 below -100; NaN stays.
struct ExpNonPositive {
  HRM_INLINE vfloat operator()(vfloat x) const {
    x = x < -100.0f ? splat(-100.0f) : x;                            // NaN stays
    const vfloat n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln2) via 1.5 * 2^23
    const vfloat r = x - n * 0.693147182f;
    vfloat p = splat(8.369148709e-3f);
    p = p * r + 4.191750661e-2f;
    p = p * r + 1.666650474e-1f;
    p = p * r + 4.999887049e-1f;
    p = p * r + 1.0f;
    p = p * r + 1.000000119f;
    return reinterpret_cast<vfloat>(
        _mm512_maskz_scalef_ps(0xFFFF, reinterpret_cast<__m512>(p), reinterpret_cast<__m512>(n)));
  }
};

// v rounded to bf16 (nearest even, as to_bf16) in one instruction (vcvtneps2bf16).
HRM_DOT vhalf bf16_of(vfloat v) { return reinterpret_cast<vhalf>(_mm512_cvtneps_pbh(reinterpret_cast<__m512>(v))); }

HRM_DOT __m512bh pair_at(const bf16_bits* p) {  // p[0], p[1] in every lane
  int32_t pair;
  std::memcpy(&pair, p, sizeof pair);
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
}
HRM_DOT __m512bh pairs_at(const bf16_bits* p) { return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p)); }

// Four bf16 rows a[q * D ..] times columns packed as [D/2][S_pad][2]: f(j, acc) for each 16-column block j, with
// acc[q] = sum over d of a[q][d] b[d][j ..]. 32 columns at a time: eight chains for the dot product's latency.
template <int D, class F>
HRM_DOT void rows_times_columns(const bf16_bits* a, const bf16_bits* bp, int64_t S_pad, F&& f) {
  for (int64_t j = 0; j < S_pad; j += 32) {
    const bool two = S_pad - j >= 32;
    __m512 acc[2][kQueryBlock];
#pragma GCC unroll 4
    for (int q = 0; q < kQueryBlock; ++q) acc[0][q] = acc[1][q] = _mm512_setzero_ps();
    for (int d2 = 0; d2 < D / 2; ++d2) {
      const __m512bh b0 = pairs_at(bp + (d2 * S_pad + j) * 2), b1 = two ? pairs_at(bp + (d2 * S_pad + j + 16) * 2) : b0;
#pragma GCC unroll 4
      for (int q = 0; q < kQueryBlock; ++q) {
        const __m512bh x = pair_at(a + q * D + 2 * d2);
        acc[0][q] = _mm512_dpbf16_ps(acc[0][q], x, b0);
        acc[1][q] = _mm512_dpbf16_ps(acc[1][q], x, b1);
      }
    }
    f(j, acc[0]);
    if (two) f(j + 16, acc[1]);
  }
}

// Four bf16 rows w[q * w_stride ..] (length S_pad) times a matrix packed as [S_pad/2][D][2]: f(q, v, sum) with
// sum = sum over t of w[q][t] m[t][16 v ..], v < D / 16. With one or two vectors per row, two accumulator sets
// (alternate pairs of t) for latency; every index constant, so the accumulators stay in registers.
template <int D, class F>
HRM_DOT void rows_times_rows(const bf16_bits* w, int64_t w_stride, const bf16_bits* mp, int64_t S_pad, F&& f) {
  constexpr int DV = D / 16, SETS = DV <= 2 ? 2 : 1;
  __m512 acc[SETS][kQueryBlock][DV];
#pragma GCC unroll 2
  for (int k = 0; k < SETS; ++k)
#pragma GCC unroll 4
    for (int q = 0; q < kQueryBlock; ++q)
#pragma GCC unroll 4
      for (int v = 0; v < DV; ++v) acc[k][q][v] = _mm512_setzero_ps();
  for (int64_t t = 0; t < S_pad; t += 2 * SETS) {  // S_pad is a multiple of 16
#pragma GCC unroll 2
    for (int k = 0; k < SETS; ++k) {
      __m512bh m[DV];
#pragma GCC unroll 4
      for (int v = 0; v < DV; ++v) m[v] = pairs_at(mp + ((t / 2 + k) * D + 16 * v) * 2);
#pragma GCC unroll 4
      for (int q = 0; q < kQueryBlock; ++q) {
        const __m512bh x = pair_at(w + q * w_stride + t + 2 * k);
#pragma GCC unroll 4
        for (int v = 0; v < DV; ++v) acc[k][q][v] = _mm512_dpbf16_ps(acc[k][q][v], x, m[v]);
      }
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < kQueryBlock; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < DV; ++v) {
      __m512 sum = acc[0][q][v];
      if constexpr (SETS == 2) sum = _mm512_add_ps(sum, acc[SETS - 1][q][v]);
      f(q, v, sum);
    }
}

// acc[d][j] += sum over t < n of a[t][d] x[t][j] for d < D, j in [j0, j0 + 16 NV): a and x packed as pairs of rows
// (a [n/2][D][2], x [n/2][S_pad][2]), acc float [D][S_pad]. Four columns of a at a time.
template <int NV>
HRM_DOT void add_columns_times_rows(const bf16_bits* a, const bf16_bits* xp, int64_t n, int64_t S_pad, int64_t D,
                                    int64_t j0, float* acc) {
  for (int64_t d0 = 0; d0 < D; d0 += 4) {
    __m512 sum[4][NV];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) sum[r][v] = _mm512_setzero_ps();
    for (int64_t t2 = 0; t2 < n / 2; ++t2) {
      __m512bh x[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) x[v] = pairs_at(xp + (t2 * S_pad + j0 + 16 * v) * 2);
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) {
        const __m512bh y = pair_at(a + (t2 * D + d0 + r) * 2);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) sum[r][v] = _mm512_dpbf16_ps(sum[r][v], y, x[v]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* o = acc + (d0 + r) * S_pad + j0 + 16 * v;
        _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), sum[r][v]));
      }
  }
}
HRM_DOT void add_columns_times_rows(const bf16_bits* a, const bf16_bits* xp, int64_t n, int64_t S_pad, int64_t D,
                                    float* acc) {
  int64_t j = 0;
  for (; j + 64 <= S_pad; j += 64) add_columns_times_rows<4>(a, xp, n, S_pad, D, j, acc);
  for (; j < S_pad; j += 16) add_columns_times_rows<1>(a, xp, n, S_pad, D, j, acc);
}

// Two float rows times factors, rounded to bf16 and interleaved as pairs: out[j][0..1] = x0[j] s0, x1[j] s1.
HRM_DOT void interleave_rows(const float* x0, float s0, const float* x1, float s1, int64_t S_pad, bf16_bits* out) {
  for (int64_t j = 0; j < S_pad; j += W) {
    const vuint pairs = __builtin_convertvector(bf16_of(load_full(x0 + j) * s0), vuint) |
                        (__builtin_convertvector(bf16_of(load_full(x1 + j) * s1), vuint) << 16);
    std::memcpy(out + 2 * j, &pairs, sizeof pairs);
  }
}

// Layouts of a bf16 matrix m [n][D] (row t at m + t * m_stride; rows n <= t < n_pad are 0) for the dot products:
// as columns, [D/2][n_pad][2] (pairs along D; n_pad a multiple of 16), and as pairs of rows, [n_pad/2][D][2] (pairs
// along t; n_pad even). D a multiple of 16, m_stride even.
HRM_INLINE void pack_columns(const bf16_bits* m, int64_t m_stride, int64_t n, int64_t n_pad, int64_t D,
                             bf16_bits* out) {
  const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int64_t t0 = 0; t0 < n_pad; t0 += 16) {
    const __mmask16 valid = t0 >= n ? 0 : n - t0 >= 16 ? 0xFFFF : (1u << (n - t0)) - 1;
    const __m512i words = _mm512_mullo_epi32(_mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int32_t>(t0))),
                                             _mm512_set1_epi32(static_cast<int32_t>(m_stride / 2)));
    for (int64_t d2 = 0; d2 < D / 2; ++d2)
      _mm512_storeu_si512(out + (d2 * n_pad + t0) * 2,
                          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, words, m + 2 * d2, 4));
  }
}
HRM_INLINE void pack_row_pairs(const bf16_bits* m, int64_t m_stride, int64_t n, int64_t n_pad, int64_t D,
                               bf16_bits* out) {
  for (int64_t t = 0; t < n_pad; t += 2)
    for (int64_t d = 0; d < D; d += W) {
      vhalf r0{}, r1{};
      if (t < n) std::memcpy(&r0, m + t * m_stride + d, sizeof r0);
      if (t + 1 < n) std::memcpy(&r1, m + (t + 1) * m_stride + d, sizeof r1);
      const vuint pairs = __builtin_convertvector(r0, vuint) | (__builtin_convertvector(r1, vuint) << 16);
      std::memcpy(out + t * D + 2 * d, &pairs, sizeof pairs);
    }
}
// Float rows x [n][D] rounded to bf16 rows [n_pad][D] (rows n and on: 0).
HRM_INLINE void round_rows(const float* x, int64_t n, int64_t n_pad, int64_t D, bf16_bits* out) {
  for (int64_t i = 0; i < n * D; i += W) store_full(out + i, load_full(x + i));
  std::fill(out + n * D, out + n_pad * D, bf16_bits{0});
}

// The forward (attention_pairs' contract) for D = 16 DV. Per pair: K packed as [D/2][S_pad][2], V as
// [S_pad/2][D][2], queries as bf16 rows.
template <int DV>
__attribute__((target("avx512bf16"))) void attention_dot_pairs(const bf16_bits* qkv, const float* cos, const float* sin,
                                                               bf16_bits* out, float* scratch, int64_t bh0, int64_t bh1,
                                                               int64_t H, int64_t S, float scale) {
  constexpr int64_t QB = kQueryBlock, D = 16 * DV;
  const int64_t S_pad = round_up(S), S4 = (S + QB - 1) / QB * QB;
  float* rows = scratch;                                         // [S4][D]: k, then q as float rows
  float* p = rows + S4 * D;                                      // [QB][S_pad] scores, then exp(score - max)
  bf16_bits* kp = reinterpret_cast<bf16_bits*>(p + QB * S_pad);  // [D/2][S_pad][2]
  bf16_bits* vp = kp + D * S_pad;                                // [S_pad/2][D][2]
  bf16_bits* qb = vp + S_pad * D;                                // [S4][D]
  bf16_bits* pb = qb + S4 * D;                                   // [QB][S_pad]
  const int64_t row_stride = 3 * H * D;
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const bf16_bits* base = qkv + b * S * row_stride;
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, rows, D);
    round_rows(rows, S, S, D, qb);  // k, for now
    pack_columns(qb, D, S, S_pad, D, kp);
    pack_row_pairs(base + (2 * H + h) * D, row_stride, S, S_pad, D, vp);  // v is bf16 already: no rounding
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale, rows, D);
    round_rows(rows, S, S4, D, qb);

    for (int64_t i0 = 0; i0 < S; i0 += QB) {
      const int64_t nq = std::min(QB, S - i0);
      vfloat row_max[QB];
      for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
      rows_times_columns<D>(qb + i0 * D, kp, S_pad, [&](int64_t j, const __m512* acc) HRM_LAMBDA {
        keep_scores<kQueryBlock>(acc, j, S, p, S_pad, row_max);
      });
      float inv_sum[QB];  // exp(score - max), summed in float, then rounded to bf16
      exp_rows<QB>(
          p, S, S_pad, row_max, nq, inv_sum,
          [&](int64_t q, int64_t j, vfloat e) HRM_LAMBDA { store_full(p + q * S_pad + j, e); }, ExpNonPositive{});
      for (int64_t i = 0; i < QB * S_pad; i += W) {
        const vhalf rounded = bf16_of(load_full(p + i));
        std::memcpy(pb + i, &rounded, sizeof rounded);
      }
      rows_times_rows<D>(pb, S_pad, vp, S_pad, [&](int q, int v, __m512 sum) HRM_LAMBDA {
        if (q < nq)
          store_full(out + ((b * S + i0 + q) * H + h) * D + 16 * v, reinterpret_cast<vfloat>(sum) * inv_sum[q]);
      });
    }
  }
}

// The backward (attention_backward_pairs' contract and blocks of query rows) for D = 16 DV: the five products on
// dot products (bf16 inputs: q, k, v, dO, P and dS), the softmax and dS = P * (dP - rowsum(P * dP)) in float.
template <int DV>
__attribute__((target("avx512bf16"))) void attention_dot_backward_pairs(const bf16_bits* qkv, const float* cos,
                                                                        const float* sin, const bf16_bits* dout,
                                                                        bf16_bits* d_qkv, float* scratch, int64_t bh0,
                                                                        int64_t bh1, int64_t H, int64_t S,
                                                                        float scale) {
  constexpr int64_t QB = kQueryBlock, D = 16 * DV;
  const int64_t S_pad = round_up(S), S4 = (S + QB - 1) / QB * QB, rows = backward_query_block<QB>(S);
  float* f = scratch;                                        // [S4][D] float rows: k, q, dQ, dV, dK
  float* P = f + S4 * D;                                     // [rows][S_pad] exp(score - max), then dS
  float* dP = P + rows * S_pad;                              // [rows][S_pad]
  float* dVT = dP + rows * S_pad;                            // [D][S_pad]
  float* dKT = dVT + D * S_pad;                              // [D][S_pad]
  float* inv = dKT + D * S_pad;                              // [rows] 1 / the sum of each row of P
  bf16_bits* kc = reinterpret_cast<bf16_bits*>(inv + rows);  // [D/2][S_pad][2] k for the scores
  bf16_bits* kr = kc + D * S_pad;                            // [S_pad/2][D][2] k for dQ
  bf16_bits* vc = kr + S_pad * D;                            // [D/2][S_pad][2] v for dP
  bf16_bits* qb = vc + D * S_pad;                            // [S4][D] q (rotated, scaled)
  bf16_bits* qT = qb + S4 * D;                               // [S4/2][D][2] q, pairs of rows
  bf16_bits* ob = qT + D * S4;                               // [S4][D] dO
  bf16_bits* oT = ob + S4 * D;                               // [S4/2][D][2] dO, pairs of rows
  bf16_bits* pi = oT + D * S4;                               // [rows/2][S_pad][2] P, pairs of query rows
  bf16_bits* si = pi + rows * S_pad;                         // [rows/2][S_pad][2] dS, pairs of query rows
  bf16_bits* sb = si + rows * S_pad;                         // [rows][S_pad] dS
  const int64_t row_stride = 3 * H * D;
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const bf16_bits* base = qkv + b * S * row_stride;
    bf16_bits* d_base = d_qkv + b * S * row_stride + h * D;
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, f, D);
    round_rows(f, S, S, D, qb);  // k, for now
    pack_columns(qb, D, S, S_pad, D, kc);
    pack_row_pairs(qb, D, S, S_pad, D, kr);
    pack_columns(base + (2 * H + h) * D, row_stride, S, S_pad, D, vc);
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale, f, D);
    round_rows(f, S, S4, D, qb);
    pack_row_pairs(qb, D, S, S4, D, qT);
    const bf16_bits* dO = dout + (b * S * H + h) * D;
    for (int64_t i = 0; i < S; ++i) std::copy(dO + i * H * D, dO + i * H * D + D, ob + i * D);
    std::fill(ob + S * D, ob + S4 * D, bf16_bits{0});
    pack_row_pairs(dO, H * D, S, S4, D, oT);
    std::fill(dVT, dVT + 2 * D * S_pad, 0.0f);  // and dKT
    for (int64_t i0 = 0; i0 < S4; i0 += rows) {
      const int64_t n = std::min(rows, S4 - i0);  // a multiple of QB
      // P as exp(score - max) (while the rows are in L1) and 1 / its sum: the normalisation goes into P's readers
      for (int64_t q0 = 0; q0 < n; q0 += QB) {
        vfloat row_max[QB];
        for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
        rows_times_columns<D>(qb + (i0 + q0) * D, kc, S_pad, [&](int64_t j, const __m512* acc) HRM_LAMBDA {
          keep_scores<kQueryBlock>(acc, j, S, P + q0 * S_pad, S_pad, row_max);
        });
        float* pq = P + q0 * S_pad;
        exp_rows<QB>(
            pq, S, S_pad, row_max, std::min(QB, S - i0 - q0), inv + q0,
            [&](int64_t q, int64_t j, vfloat e) HRM_LAMBDA { store_full(pq + q * S_pad + j, e); }, ExpNonPositive{});
        rows_times_columns<D>(ob + (i0 + q0) * D, vc, S_pad, [&](int64_t j, const __m512* acc) HRM_LAMBDA {
          for (int64_t q = 0; q < QB; ++q) store_full(dP + (q0 + q) * S_pad + j, reinterpret_cast<vfloat>(acc[q]));
        });
      }
      for (int64_t q = 0; q < n; q += 2)
        interleave_rows(P + q * S_pad, inv[q], P + (q + 1) * S_pad, inv[q + 1], S_pad, pi + q * S_pad);
      add_columns_times_rows(oT + i0 * D, pi, n, S_pad, D, dVT);  // dV[j] += sum_i P[i][j] dO[i]
      for (int64_t q = 0; q < n; ++q) {  // dS = P * (dP - sum_j P dP), in float, then as bf16 rows
        float* pq = P + q * S_pad;
        const float* dpq = dP + q * S_pad;
        vfloat dot{};
        for (int64_t j = 0; j < S_pad; j += W) dot += load_full(pq + j) * load_full(dpq + j);
        const float di = sum_lanes(dot) * inv[q];
        for (int64_t j = 0; j < S_pad; j += W) {
          const vfloat ds = load_full(pq + j) * inv[q] * (load_full(dpq + j) - di);
          store_full(pq + j, ds);
          const vhalf rounded = bf16_of(ds);
          std::memcpy(sb + q * S_pad + j, &rounded, sizeof rounded);
        }
      }
      for (int64_t q = 0; q < n; q += 2)
        interleave_rows(P + q * S_pad, 1.0f, P + (q + 1) * S_pad, 1.0f, S_pad, si + q * S_pad);
      for (int64_t q0 = 0; q0 < n; q0 += QB)  // dQ[i] = scale * sum_j dS[i][j] K[j]
        rows_times_rows<D>(sb + q0 * S_pad, S_pad, kr, S_pad, [&](int q, int v, __m512 sum) HRM_LAMBDA {
          store_full(f + (i0 + q0 + q) * D + 16 * v, reinterpret_cast<vfloat>(sum) * scale);
        });
      store_head_grad(f + i0 * D, D, i0, std::min(n, S - i0), cos, sin, d_base, row_stride, D);
      add_columns_times_rows(qT + i0 * D, si, n, S_pad, D, dKT);  // dK[j] += sum_i dS[i][j] (scale * Q[i])
    }
    const auto store_columns = [&](const float* acc, const float* rot_cos, int64_t slot) {  // [D][S_pad] -> rows
      for (int64_t j = 0; j < S; ++j)
        for (int64_t d = 0; d < D; ++d) f[j * D + d] = acc[d * S_pad + j];
      store_head_grad(f, D, 0, S, rot_cos, sin, d_base + slot * H * D, row_stride, D);
    };
    store_columns(dVT, nullptr, 2);
    store_columns(dKT, cos, 1);
  }
}
#undef HRM_DOT
#endif

// Gradient of attention_pairs with respect to qkv, for (batch*head) pairs [bh0, bh1): dout [B, S, H, D] ->
// d_qkv [B, S, 3H, D] (each pair writes its own q, k and v slices). Recomputes the probabilities P (nothing is
// saved from the forward but qkv), then, in float, per block of query rows (backward_query_block):
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(P * dP)),  dQ = scale dS K,  dK += scale dS^T Q,
// and rotates dQ, dK back (the transpose of RoPE's rotation). scratch: attention_backward_scratch_floats(S, D).
template <class T>
HRM_INLINE void attention_backward_pairs(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv,
                                         float* scratch, int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D,
                                         float scale) {
  constexpr int64_t QB = kFloatRows;
  const int64_t S_pad = round_up(S), D_pad = round_up(D), S4 = (S + QB - 1) / QB * QB;
  const int64_t rows = backward_query_block<QB>(S);
  float* Qs = scratch;            // [S4][D_pad] rotated q * scale * log2(e): base-2 scores
  float* K = Qs + S4 * D_pad;     // [S4][D_pad] rotated k
  float* dO = K + S4 * D_pad;     // [S4][D_pad]
  float* dV = dO + S4 * D_pad;    // [S4][D_pad]
  float* dK = dV + S4 * D_pad;    // [S4][D_pad]
  float* kT = dK + S4 * D_pad;    // [D][S_pad]
  float* vT = kT + D * S_pad;     // [D][S_pad]
  float* P = vT + D * S_pad;      // [rows][S_pad] probabilities, then dS
  float* dP = P + rows * S_pad;   // [rows][S_pad]
  float* dQ = dP + rows * S_pad;  // [rows][D_pad]
  const int64_t row_stride = 3 * H * D;
  for (int64_t bh = bh0; bh < bh1; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const T* base = qkv + b * S * row_stride;
    T* d_base = d_qkv + b * S * row_stride + h * D;
    head_rows(base + h * D, row_stride, cos, sin, S, D, scale * kLog2e, Qs, D_pad);
    head_rows(base + (H + h) * D, row_stride, cos, sin, S, D, 1.0f, K, D_pad);
    transpose_rows(K, S, D, D_pad, kT, S_pad);
    head_rows<T>(base + (2 * H + h) * D, row_stride, nullptr, nullptr, S, D, 1.0f, dV, D_pad);  // V, for now
    transpose_rows(dV, S, D, D_pad, vT, S_pad);
    head_rows<T>(dout + (b * S * H + h) * D, H * D, nullptr, nullptr, S, D, 1.0f, dO, D_pad);
    for (int64_t i = S * D_pad; i < S4 * D_pad; ++i) Qs[i] = K[i] = dO[i] = 0.0f;
    std::fill(dV, dV + 2 * S4 * D_pad, 0.0f);  // and dK
    // acc[r] += sum over the block's query rows q < n of w[q][r] m[q], for all key rows r < S4 (w: P or dS)
    const auto add_transposed = [&](const float* w, const float* m, int64_t n, float* acc) HRM_LAMBDA {
      for (int64_t r0 = 0; r0 < S4; r0 += QB)
        mix_rows(w + r0, 1, S_pad, m, D_pad, n, D_pad, [&](int64_t d, const vfloat* sum) HRM_LAMBDA {
          for (int64_t q = 0; q < QB; ++q) {
            float* a = acc + (r0 + q) * D_pad + d;
            store_full(a, load_full(a) + sum[q]);
          }
        });
    };
    for (int64_t i0 = 0; i0 < S4; i0 += rows) {
      const int64_t n = std::min(rows, S4 - i0);  // a multiple of QB
      // P (rows past S are 0), each group of rows' softmax while it is in L1, and dP = dO V^T
      for (int64_t q0 = 0; q0 < n; q0 += QB) {
        vfloat row_max[QB];
        for (int64_t q = 0; q < QB; ++q) row_max[q] = splat(-INFINITY);
        mix_rows(Qs + (i0 + q0) * D_pad, D_pad, 1, kT, S_pad, D, S_pad,
                 [&](int64_t j, const vfloat* scores)
                     HRM_LAMBDA { keep_scores<QB>(scores, j, S, P + q0 * S_pad, S_pad, row_max); });
        float* pq = P + q0 * S_pad;
        float inv[QB];
        exp_rows<QB>(pq, S, S_pad, row_max, std::min(QB, S - i0 - q0), inv,
                     [&](int64_t q, int64_t j, vfloat e) HRM_LAMBDA { store_full(pq + q * S_pad + j, e); });
        for (int64_t q = 0; q < QB; ++q)
          for (int64_t j = 0; j < S_pad; j += W) store_full(pq + q * S_pad + j, load_full(pq + q * S_pad + j) * inv[q]);
        mix_rows(dO + (i0 + q0) * D_pad, D_pad, 1, vT, S_pad, D, S_pad, [&](int64_t j, const vfloat* dps) HRM_LAMBDA {
          for (int64_t q = 0; q < QB; ++q) store_full(dP + (q0 + q) * S_pad + j, dps[q]);
        });
      }
      add_transposed(P, dO + i0 * D_pad, n, dV);  // dV[j] += sum_i P[i][j] dO[i]
      // dS = P * (dP - sum_j P dP), in place of P
      for (int64_t q = 0; q < n; ++q) {
        float* pq = P + q * S_pad;
        const float* dpq = dP + q * S_pad;
        vfloat dot[4] = {};  // four sums: one would wait on the FMA's latency
        for (int64_t j = 0; j < S_pad; j += W) dot[(j / W) & 3] += load_full(pq + j) * load_full(dpq + j);
        const float di = sum_lanes((dot[0] + dot[1]) + (dot[2] + dot[3]));
        for (int64_t j = 0; j < S_pad; j += W) store_full(pq + j, load_full(pq + j) * (load_full(dpq + j) - di));
      }
      for (int64_t q0 = 0; q0 < n; q0 += QB)  // dQ[i] = scale * sum_j dS[i][j] K[j]
        mix_rows(P + q0 * S_pad, S_pad, 1, K, D_pad, S, D_pad, [&](int64_t d, const vfloat* acc) HRM_LAMBDA {
          for (int64_t q = 0; q < QB; ++q) store_full(dQ + (q0 + q) * D_pad + d, acc[q] * scale);
        });
      store_head_grad(dQ, D_pad, i0, std::min(n, S - i0), cos, sin, d_base, row_stride, D);
      add_transposed(P, Qs + i0 * D_pad, n, dK);  // dK[j] += sum_i dS[i][j] (scale * log2(e) * Q[i])
    }
    for (int64_t i = 0; i < S * D_pad; i += W) store_full(dK + i, load_full(dK + i) * (1.0f / kLog2e));
    store_head_grad(dV, D_pad, 0, S, nullptr, nullptr, d_base + 2 * H * D, row_stride, D);
    store_head_grad(dK, D_pad, 0, S, cos, sin, d_base + H * D, row_stride, D);
  }
}

}  // namespace

int64_t attention_backward_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kFloatRows - 1) / kFloatRows * kFloatRows, rows = backward_query_block<kFloatRows>(S);
  return 5 * S4 * round_up(D) + 2 * D * round_up(S) + rows * (2 * round_up(S) + round_up(D));
}

int64_t attention_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kFloatRows - 1) / kFloatRows * kFloatRows;
  return D * round_up(S) + S * round_up(D) + S4 * round_up(D) + kFloatRows * round_up(S);
}

#if defined(__AVX512F__)
int64_t attention_dot_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock, S_pad = round_up(S);
  return S4 * D + kQueryBlock * S_pad + (2 * D * S_pad + S4 * D + kQueryBlock * S_pad + 1) / 2;
}

int64_t attention_dot_backward_scratch_floats(int64_t S, int64_t D) {
  const int64_t S4 = (S + kQueryBlock - 1) / kQueryBlock * kQueryBlock, S_pad = round_up(S);
  const int64_t rows = backward_query_block<kQueryBlock>(S);
  return S4 * D + 2 * rows * S_pad + 2 * D * S_pad + rows + (3 * D * S_pad + 4 * S4 * D + 3 * rows * S_pad + 1) / 2;
}

void attention_dot_backward(const bf16_bits* qkv, const float* cos, const float* sin, const bf16_bits* dout,
                            bf16_bits* d_qkv, float* scratch, int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D,
                            float scale) {
  switch (D) {
    case 16: return attention_dot_backward_pairs<1>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, scale);
    case 32: return attention_dot_backward_pairs<2>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, scale);
    case 48: return attention_dot_backward_pairs<3>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, scale);
    case 64: return attention_dot_backward_pairs<4>(qkv, cos, sin, dout, d_qkv, scratch, bh0, bh1, H, S, scale);
  }
}

void exp_nonpositive(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += W)
    store(out + i, ExpNonPositive{}(load(x + i, std::min(W, n - i))), std::min(W, n - i));
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

template <class F>
void elementwise(const float* x, float* out, int64_t n, F f) {
  for (int64_t i = 0; i < n; i += W) store(out + i, f(load(x + i, std::min(W, n - i))), std::min(W, n - i));
}
void vector_exp(const float* x, float* out, int64_t n) {
  elementwise(x, out, n, [](vfloat v) { return exp(v); });
}
void vector_exp2_nonpositive(const float* x, float* out, int64_t n) {
  elementwise(x, out, n, [](vfloat v) { return exp2_nonpositive(v); });
}

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
