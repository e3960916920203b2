// bf16 matrix products on AVX512-BF16 dot products (vdpbf16ps): C [M, N] = A [M, K] B [K, N], bf16 operands, float
// sums, one rounding to bf16 at the end (the contract of LibTorch's bf16 products). Compiled once, for x86-64-v4 +
// AVX512-BF16 (CMakeLists.txt); called only where the CPU has it (fused.cpp).
//
// Why not oneDNN (what LibTorch calls): on AMD Zen 4 its bf16 kernels reach 237-282 GFLOP/s on the layer shapes of
// the small preset (2 cores), this 6 x 64 register tile 345-420 (docs/benchmarks.md). B is packed per call as k-pairs
// ([K/2][64][2] per 64-column block: what one vdpbf16ps multiplies), A is read in place: a k-pair of a row is one
// 32-bit broadcast.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "fused_kernels.h"

namespace hrm::nn::kernels::avx512_bf16 {
namespace {

constexpr int64_t kRows = 6;   // rows of A per register tile
constexpr int64_t kCols = 64;  // columns of B per packed block (4 vectors of 16 floats)

// C's columns as bf16, rounded to nearest even (vcvtneps2bf16).
struct StoreRounded {
  template <int R, int V>
  void operator()(__m512 (&acc)[R][V], bf16_bits* c, int64_t ldc) const {
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < V; ++v)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * ldc + 16 * v),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[i][v])));
  }
};

// SwiGLU of a block packed as [32 gate | 32 up] columns: 32 outputs silu(gate) * up per row, with every rounding of
// the unfused ops (gate and up to bf16, silu(gate) to bf16 -- the table holds it per bf16 gate -- the product to bf16).
struct StoreSwiglu {
  const float* silu_table;
  template <int R, int V>
  void operator()(__m512 (&acc)[R][V], bf16_bits* c, int64_t ldc) const {
    if constexpr (V != 4) return;  // a SwiGLU block is 2 gate and 2 up vectors (N a multiple of 64)
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < 2; ++v) {
        const __m256i gate = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[i][v]));
        const __m512 silu = _mm512_i32gather_ps(_mm512_cvtepu16_epi32(gate), silu_table, 4);
        const __m256i up = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[i][(v + 2) % V]));
        const __m512 up_f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(up), 16));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * ldc + 16 * v),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_mul_ps(silu, up_f))));
      }
  }
};

// StoreSwiglu that also writes the product [gate | up] (rounded to bf16) to `product` ([M, N], the layout of the
// unfused product), for a graph: SwiGLU's backward reads it.
struct StoreSwigluKeepingProduct {
  StoreSwiglu swiglu;
  bf16_bits* product;    // row 0, column 0 of the product
  int64_t n;             // N / 2: where the up columns start
  const bf16_bits* out;  // row 0, column 0 of SwiGLU's output: a tile's position follows from its c
  template <int R, int V>
  void operator()(__m512 (&acc)[R][V], bf16_bits* c, int64_t ldc) const {
    if constexpr (V != 4) return;
    const int64_t offset = c - out, row = offset / ldc, col = offset % ldc;  // col: the tile's first gate column
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < 2; ++v) {
        bf16_bits* gate = product + (row + i) * 2 * n + col + 16 * v;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(gate), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[i][v])));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(gate + n),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[i][v + 2])));
      }
    swiglu(acc, c, ldc);
  }
};

// One tile: rows R (<= kRows) of A times a packed block of V (<= 4) vectors of columns; 4 x 6 = 24 accumulators.
template <int R, int V, class Store>
inline void tile(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, bf16_bits* c, int64_t ldc,
                 const Store& store) {
  __m512 acc[R][V];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  const int64_t width = 16 * V;
  for (int64_t k = 0; k < K; k += 2) {
    const bf16_bits* p = packed + k * width;
    __m512bh b[V];
    for (int v = 0; v < V; ++v) b[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(p + 32 * v));
    for (int i = 0; i < R; ++i) {
      int32_t pair;
      std::memcpy(&pair, a + i * lda + k, sizeof pair);
      const __m512bh ai = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], ai, b[v]);
    }
  }
  store(acc, c, ldc);
}

template <int V, class Store>
inline void tile_rows(int64_t rows, const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, bf16_bits* c,
                      int64_t ldc, const Store& store) {
  switch (rows) {
    case 6: return tile<6, V>(a, lda, K, packed, c, ldc, store);
    case 5: return tile<5, V>(a, lda, K, packed, c, ldc, store);
    case 4: return tile<4, V>(a, lda, K, packed, c, ldc, store);
    case 3: return tile<3, V>(a, lda, K, packed, c, ldc, store);
    case 2: return tile<2, V>(a, lda, K, packed, c, ldc, store);
    default: return tile<1, V>(a, lda, K, packed, c, ldc, store);
  }
}

// Rows [m0, m1) of A times every packed column block (a block n0 writes C's columns from n0 >> out_shift). A block
// of rows of A (at most 48, at most ~12 KiB) stays in L1 while the column blocks of a panel pass over them; a panel
// of B (at most kPanelBytes) stays in L2 while every row block passes over it. A B larger than that (the paper
// preset's weights: 0.5-3 MiB) would otherwise come from L3 again for every block of rows.
template <class Store>
void gemm_rows(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, int64_t N, bf16_bits* c,
               int64_t ldc, int64_t out_shift, int64_t m0, int64_t m1, const Store& store) {
  constexpr int64_t kPanelBytes = 384 << 10;
  const int64_t kRowBlock = std::clamp<int64_t>(12288 / (2 * K) / kRows, 1, 8) * kRows;
  const int64_t panel = std::max<int64_t>(1, kPanelBytes / (2 * K * kCols)) * kCols;
  for (int64_t p0 = 0; p0 < N; p0 += panel)
    for (int64_t r0 = m0; r0 < m1; r0 += kRowBlock) {
      const int64_t r1 = std::min(m1, r0 + kRowBlock);
      for (int64_t n0 = p0; n0 < std::min(N, p0 + panel); n0 += kCols) {
        const bf16_bits* p = packed + n0 * K;
        for (int64_t r = r0; r < r1; r += kRows) {
          const int64_t rows = std::min(kRows, r1 - r);
          const bf16_bits* ar = a + r * lda;
          bf16_bits* cr = c + r * ldc + (n0 >> out_shift);
          switch (std::min(kCols, N - n0) / 16) {
            case 4: tile_rows<4>(rows, ar, lda, K, p, cr, ldc, store); break;
            case 3: tile_rows<3>(rows, ar, lda, K, p, cr, ldc, store); break;
            case 2: tile_rows<2>(rows, ar, lda, K, p, cr, ldc, store); break;
            default: tile_rows<1>(rows, ar, lda, K, p, cr, ldc, store); break;
          }
        }
      }
    }
}

}  // namespace

// B [K, N] at b[k * k_stride + n * n_stride] -> per 64-column block (the last one 16, 32 or 48 wide) [K/2][width][2],
// the block starting at column n0 stored at packed + n0 * K (K * N elements in all). Columns [n0, n1) only (threads
// split the blocks). With `swiglu`, B is [gate | up] (N / 2 columns each, N a multiple of 64) and block n0 holds gate
// columns [n0/2, n0/2 + 32) then the same up columns.
void pack_b(const bf16_bits* b, int64_t k_stride, int64_t n_stride, int64_t K, int64_t N, bool swiglu,
            bf16_bits* packed, int64_t n0, int64_t n1) {
  for (int64_t blk = n0; blk < n1; blk += kCols) {
    const int64_t width = std::min(kCols, N - blk);
    bf16_bits* dst = packed + blk * K;
    for (int64_t j = 0; j < width; ++j) {
      const int64_t col = !swiglu ? blk + j : j < kCols / 2 ? blk / 2 + j : N / 2 + blk / 2 + j - kCols / 2;
      const bf16_bits* src = b + col * n_stride;
      for (int64_t k = 0; k < K; k += 2) {
        dst[k * width + 2 * j] = src[k * k_stride];
        dst[k * width + 2 * j + 1] = src[(k + 1) * k_stride];
      }
    }
  }
}

void gemm_packed(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, int64_t N, bf16_bits* c,
                 int64_t m0, int64_t m1) {
  gemm_rows(a, lda, K, packed, N, c, N, 0, m0, m1, StoreRounded{});
}

void gemm_swiglu_packed(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, int64_t N,
                        const float* silu_table, bf16_bits* out, int64_t m0, int64_t m1, bf16_bits* product) {
  if (product == nullptr) return gemm_rows(a, lda, K, packed, N, out, N / 2, 1, m0, m1, StoreSwiglu{silu_table});
  gemm_rows(a, lda, K, packed, N, out, N / 2, 1, m0, m1,
            StoreSwigluKeepingProduct{StoreSwiglu{silu_table}, product, N / 2, out});
}

// The ceiling of these kernels: independent vdpbf16ps chains on registers only (see register_multiply_adds).
double register_dot_products(int64_t iterations) {
  constexpr int kChains = 12;
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x3F803F80));  // (1, 1) pairs
  const __m512bh b = reinterpret_cast<__m512bh>(_mm512_set1_epi32(0x33D633D6));  // (1e-7, 1e-7)
  for (int64_t k = 0; k < iterations; ++k)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  __m512 sum = _mm512_setzero_ps();
  for (int i = 0; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(sum);
  (void)sink;
  return 64.0 * kChains * static_cast<double>(iterations);  // 16 lanes x 2 products x 2 FLOPs
}

}  // namespace hrm::nn::kernels::avx512_bf16
