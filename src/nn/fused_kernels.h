#pragma once
// Entry points of the fused CPU kernels (src/nn/fused_kernels.cpp); rows [r0, r1) of contiguous buffers.
// Internal to the library: hrm/nn/fused.h is the tensor-level API.
#include <cstdint>

namespace hrm::nn::kernels {

using bf16_bits = uint16_t;  // bfloat16 as its bit pattern

#define HRM_DECLARE_ENTRY_POINTS(T, suffix)                                                                        \
  void add_rms_norm_##suffix(const T* x, const T* y, T* out, int64_t r0, int64_t r1, int64_t n, float eps);       \
  void swiglu_##suffix(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n);                              \
  void scaled_softmax_##suffix(const T* x, T* out, float* tmp, int64_t r0, int64_t r1, int64_t n, float scale);   \
  void split_heads_##suffix(const T* qkv, const float* cos, const float* sin, T* q, T* k, T* v, int64_t r0,      \
                            int64_t r1, int64_t S, int64_t H, int64_t D);
HRM_DECLARE_ENTRY_POINTS(float, f32)
HRM_DECLARE_ENTRY_POINTS(bf16_bits, bf16)
#undef HRM_DECLARE_ENTRY_POINTS

}  // namespace hrm::nn::kernels
