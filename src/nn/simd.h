#pragma once
// The SIMD layer of the fused CPU kernels: GCC vector types one register wide (16 float lanes with AVX-512, 8 with
// AVX2, 4 with the SSE2 baseline or NEON), loads/stores of float and bf16, lane reductions, a vector exp and (AVX2 and
// up) FMA, sqrt and SLEEF's atan2. No LibTorch here. (Wider-than-register vector types are no shortcut: GCC 12 keeps
// them in memory and turns every select and comparison into scalar code -- a 16-lane attention kernel ran 22x slower
// on AVX2 than on AVX-512.)
// The kernel files that include it are compiled once per instruction set (-march and HRM_KERNEL_ISA from
// CMakeLists.txt); everything they define lives in hrm::nn::kernels::HRM_KERNEL_ISA, so no inline function compiled
// for one instruction set can stand in for another's at link time.
// (GCC leaves plain scalar bf16 loops unvectorised: such loops run 3x slower than LibTorch's own kernels.)
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fused_kernels.h"

#if !defined(__GNUC__) || defined(__clang__)
// __builtin_shuffle with a variable mask is GCC's; the rest of the library builds with any compiler.
#error "the fused CPU kernels (src/nn/kernels_*.cpp) need GCC"
#endif
#ifndef HRM_KERNEL_ISA
#error "compile the kernel files with -DHRM_KERNEL_ISA=avx512|avx2|generic (CMakeLists.txt)"
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__AVX2__)
#include <sleef.h>  // libsleef-dev: the vectorised atan2 LibTorch uses
#endif
#define HRM_INLINE inline __attribute__((always_inline))
// The tile loops' lambdas too (one out of line costs a call per tile).
#define HRM_LAMBDA __attribute__((always_inline))

namespace hrm::nn::kernels::HRM_KERNEL_ISA {
namespace simd {

#if defined(__AVX512F__)
constexpr int64_t W = 16;  // lanes
#elif defined(__AVX2__)
constexpr int64_t W = 8;
#else
constexpr int64_t W = 4;
#endif
typedef float vfloat __attribute__((vector_size(W * 4)));
typedef int32_t vint __attribute__((vector_size(W * 4)));
typedef uint32_t vuint __attribute__((vector_size(W * 4)));
typedef uint16_t vhalf __attribute__((vector_size(W * 2)));

HRM_INLINE vfloat splat(float v) { return vfloat{} + v; }

// ---------------------------------------------------------------- loads and stores of W elements
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

// `count` (<= W) elements from p; the other lanes hold `fill`.
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
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return from_bf16(to_bf16(v));
}

// Horizontal sum and max as a tree of lane swaps (a scalar loop over the lanes is a W-long dependency chain).
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

// max(x, c) (kMax) or min(x, c) with NaN x staying NaN, in one instruction where there is one (x86's max and min
// return their second operand when either is NaN; GCC makes a compare and a blend of the select). The masked
// AVX-512 forms because GCC 12 warns of the unmasked ones' undefined pass-through.
template <bool kMax>
HRM_INLINE vfloat bound(vfloat x, float c) {
#if defined(__AVX512F__)
  const __m512 a = reinterpret_cast<__m512>(splat(c)), b = reinterpret_cast<__m512>(x);
  return reinterpret_cast<vfloat>(kMax ? _mm512_maskz_max_ps(0xFFFF, a, b) : _mm512_maskz_min_ps(0xFFFF, a, b));
#elif defined(__AVX2__)
  const __m256 a = reinterpret_cast<__m256>(splat(c)), b = reinterpret_cast<__m256>(x);
  return reinterpret_cast<vfloat>(kMax ? _mm256_max_ps(a, b) : _mm256_min_ps(a, b));
#elif defined(__SSE2__)
  const __m128 a = reinterpret_cast<__m128>(splat(c)), b = reinterpret_cast<__m128>(x);
  return reinterpret_cast<vfloat>(kMax ? _mm_max_ps(a, b) : _mm_min_ps(a, b));
#else
  return (kMax ? x < c : x > c) ? splat(c) : x;
#endif
}
HRM_INLINE vfloat at_least(vfloat x, float c) { return bound<true>(x, c); }
HRM_INLINE vfloat at_most(vfloat x, float c) { return bound<false>(x, c); }

// p * 2^n for integral n by adding n to p's exponent bits: exact (as the product) while the result stays normal.
HRM_INLINE vfloat times_two_to(vfloat p, vfloat n) {
  const vuint two_n = reinterpret_cast<vuint>(__builtin_convertvector(n, vint)) << 23;  // unsigned: n may be < 0
  return reinterpret_cast<vfloat>(reinterpret_cast<vuint>(p) + two_n);
}

// The polynomial c0 r^k + c1 r^(k-1) + ... + ck by Horner's rule, highest coefficient first.
template <class... C>
HRM_INLINE vfloat horner(vfloat r, float c0, C... rest) {
  vfloat p = splat(c0);
  ((p = p * r + rest), ...);
  return p;
}

// exp by range reduction to [-ln2/2, ln2/2] and a degree-6 polynomial (Cephes expf, ~1 ulp). NaN propagates;
// inputs are clamped to [-87.3, 88], where p * 2^n stays a normal float (at n = -126, x >= -87.3 > -126 ln2 makes
// p > 1), so 2^n goes into p's exponent bits by an integer add (exact, as the product by 2^n was).
HRM_INLINE vfloat exp(vfloat x) {
  x = at_most(at_least(x, -87.3f), 88.0f);
  const vfloat n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2) via 1.5 * 2^23
  const vfloat r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vfloat p = horner(r, 1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                    5.0000001201e-1f);
  p = p * r * r + r + 1.0f;
  return times_two_to(p, n);
}

// 2^x for x <= 0 (a base-2 score minus its row's maximum: the softmax's exp with log2(e) folded into the query
// scale, as FlashAttention does): n = round(x) by adding and subtracting 1.5 * 2^23 and r = x - n exactly, then a
// degree-6 polynomial in r in [-1/2, 1/2] (Cephes exp2f, ~1 ulp); against exp, no multiply by log2(e) and no
// two-part reduction (four fewer multiply-adds). Clamped at -126 (n >= -126, and r >= 0 at n = -126: p 2^n stays
// normal); NaN propagates.
HRM_INLINE vfloat exp2_nonpositive(vfloat x) {
  x = at_least(x, -126.0f);
  const vfloat n = (x + 12582912.0f) - 12582912.0f;
  const vfloat r = x - n;
  const vfloat p = horner(r, 1.535336188319500e-4f, 1.339887440266574e-3f, 9.618437357674640e-3f, 5.550332471162809e-2f,
                          2.402264791363012e-1f, 6.931472028550421e-1f, 1.0f);
  return times_two_to(p, n);
}

#if defined(__AVX2__)
// a * b + c in one rounding, as LibTorch's vectorised kernels compute it (vec::fmadd).
HRM_INLINE vfloat fmadd(vfloat a, vfloat b, vfloat c) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(
      _mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b), reinterpret_cast<__m512>(c)));
#else
  return reinterpret_cast<vfloat>(
      _mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b), reinterpret_cast<__m256>(c)));
#endif
}

// Correctly rounded square root per lane.
HRM_INLINE vfloat sqrt(vfloat x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(_mm512_maskz_sqrt_ps(0xFFFF, reinterpret_cast<__m512>(x)));  // masked: see bound
#else
  return reinterpret_cast<vfloat>(_mm256_sqrt_ps(reinterpret_cast<__m256>(x)));
#endif
}

// atan2(y, x) per lane as LibTorch's AVX-512 and AVX2 kernels compute it: SLEEF's 1-ulp atan2 (the library LibTorch
// links).
HRM_INLINE vfloat atan2(vfloat y, vfloat x) {
#if defined(__AVX512F__)
  return reinterpret_cast<vfloat>(Sleef_atan2f16_u10avx512f(reinterpret_cast<__m512>(y), reinterpret_cast<__m512>(x)));
#else
  return reinterpret_cast<vfloat>(Sleef_atan2f8_u10avx2(reinterpret_cast<__m256>(y), reinterpret_cast<__m256>(x)));
#endif
}
#endif

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
  if constexpr (std::is_same_v<T, float>)
    return p[i];
  else
    return widen_bf16(p[i]);
}
template <class T>
HRM_INLINE void store1(T* p, int64_t i, float v) {
  if constexpr (std::is_same_v<T, float>)
    p[i] = v;
  else
    p[i] = round_bf16(v);
}
HRM_INLINE int64_t round_up(int64_t n) { return (n + W - 1) / W * W; }

}  // namespace simd
}  // namespace hrm::nn::kernels::HRM_KERNEL_ISA
