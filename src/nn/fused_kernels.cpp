// Fused elementwise kernels on raw float / bf16 buffers (plain C++, no LibTorch: this TU compiles in a second).
// Arithmetic is written on 16-lane GCC vector types, which the compiler lowers to one AVX-512 register, two AVX2
// registers or four SSE registers; target_clones compiles each entry point for those three targets and picks one at
// load time, so the library stays portable. (Auto-vectorisation of the scalar loops was tried first: GCC left the
// bf16 loops scalar, and they ran 3x slower than LibTorch's own kernels.)
#include "fused_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define HRM_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HRM_MULTIVERSION
#endif
#define HRM_INLINE inline __attribute__((always_inline))

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

HRM_INLINE float sum_lanes(vfloat v) {
  float s = 0;
  for (int64_t i = 0; i < W; ++i) s += v[i];
  return s;
}
HRM_INLINE float max_lanes(vfloat v) {
  float m = v[0];
  for (int64_t i = 1; i < W; ++i) m = v[i] > m ? v[i] : m;
  return m;
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
template <class T>
HRM_INLINE void add_rms_norm_rows(const T* x, const T* y, T* out, int64_t r0, int64_t r1, int64_t n, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    const T* yr = y ? y + r * n : nullptr;
    T* o = out + r * n;
    vfloat sum_sq{};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat s = yr ? round_to<T>(load(xr + i, c) + load(yr + i, c)) : load(xr + i, c);
      store(o + i, s, c);
      sum_sq += s * s;
    }
    const float inv = 1.0f / std::sqrt(sum_lanes(sum_sq) / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      store(o + i, load(o + i, c) * inv, c);
    }
  }
}

template <class T>
HRM_INLINE void swiglu_rows(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = gate_up + r * 2 * n;
    const T* u = g + n;
    T* o = out + r * n;
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat gv = load(g + i, c);
      store(o + i, round_to<T>(gv / (1.0f + exp(-gv))) * load(u + i, c), c);
    }
  }
}

// tmp: room for n rounded up to a multiple of 16 floats.
template <class T>
HRM_INLINE void scaled_softmax_rows(const T* x, T* out, float* tmp, int64_t r0, int64_t r1, int64_t n, float scale) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    T* o = out + r * n;
    vfloat m = splat(-INFINITY);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat z = round_to<T>(load(xr + i, c, -INFINITY) * scale);  // padding lanes never win the max
      store_full(tmp + i, z);
      m = z > m ? z : m;
    }
    const float row_max = max_lanes(m);
    vfloat sum{};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t c = std::min(W, n - i);
      const vfloat e = lane_index() < static_cast<int32_t>(c) ? exp(load_full(tmp + i) - row_max) : splat(0.0f);
      store_full(tmp + i, e);
      sum += e;
    }
    const float inv = 1.0f / sum_lanes(sum);
    for (int64_t i = 0; i < n; i += W) store(o + i, load_full(tmp + i) * inv, std::min(W, n - i));
  }
}

// Rows are (batch, position) pairs of qkv [B, S, 3H, D]; outputs are [B, H, S, D]. head_dim is small (8-64), so
// this is a scalar loop: it is a memory shuffle, bound by bandwidth.
template <class T>
HRM_INLINE float load1(const T* p, int64_t i) {
  if constexpr (std::is_same_v<T, float>) {
    return p[i];
  } else {
    const uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
}
template <class T>
HRM_INLINE void store1(T* p, int64_t i, float v) {
  if constexpr (std::is_same_v<T, float>) {
    p[i] = v;
  } else {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    p[i] = v != v ? T{0x7FC0} : static_cast<T>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
  }
}

template <class T>
HRM_INLINE void split_heads_rows(const T* qkv, const float* cos, const float* sin, T* q, T* k, T* v, int64_t r0,
                                 int64_t r1, int64_t S, int64_t H, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / S, s = r % S;
    const T* row = qkv + r * 3 * H * D;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t dst = ((b * H + h) * S + s) * D;
      T* outs[2] = {q + dst, k + dst};
      for (int which = 0; which < 2; ++which) {
        const T* src = row + (which * H + h) * D;
        T* o = outs[which];
        if (cos) {
          const float* c = cos + s * D;
          const float* sn = sin + s * D;
          for (int64_t d = 0; d < half; ++d) {
            const float x1 = load1(src, d), x2 = load1(src, d + half);
            store1(o, d, x1 * c[d] - x2 * sn[d]);
            store1(o, d + half, x2 * c[d] + x1 * sn[d]);
          }
        } else {
          std::memcpy(o, src, sizeof(T) * D);
        }
      }
      std::memcpy(v + dst, row + (2 * H + h) * D, sizeof(T) * D);
    }
  }
}

}  // namespace

// Multiversioned entry points (one per dtype: target_clones does not apply to templates).
#define HRM_DEFINE_ENTRY_POINTS(T, suffix)                                                                        \
  HRM_MULTIVERSION void add_rms_norm_##suffix(const T* x, const T* y, T* out, int64_t r0, int64_t r1, int64_t n,  \
                                              float eps) {                                                        \
    add_rms_norm_rows<T>(x, y, out, r0, r1, n, eps);                                                              \
  }                                                                                                               \
  HRM_MULTIVERSION void swiglu_##suffix(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n) {            \
    swiglu_rows<T>(gate_up, out, r0, r1, n);                                                                      \
  }                                                                                                               \
  HRM_MULTIVERSION void scaled_softmax_##suffix(const T* x, T* out, float* tmp, int64_t r0, int64_t r1, int64_t n, \
                                                float scale) {                                                    \
    scaled_softmax_rows<T>(x, out, tmp, r0, r1, n, scale);                                                        \
  }                                                                                                               \
  HRM_MULTIVERSION void split_heads_##suffix(const T* qkv, const float* cos, const float* sin, T* q, T* k, T* v,  \
                                             int64_t r0, int64_t r1, int64_t S, int64_t H, int64_t D) {          \
    split_heads_rows<T>(qkv, cos, sin, q, k, v, r0, r1, S, H, D);                                                 \
  }

HRM_DEFINE_ENTRY_POINTS(float, f32)
HRM_DEFINE_ENTRY_POINTS(bf16_bits, bf16)
#undef HRM_DEFINE_ENTRY_POINTS

}  // namespace hrm::nn::kernels
