#pragma once
// Entry points of the fused CPU kernels (src/nn/fused_kernels.cpp); rows [r0, r1) of contiguous buffers.
// Internal to the library: hrm/nn/fused.h is the tensor-level API.
#include <cstdint>

namespace hrm::nn::kernels {

using bf16_bits = uint16_t;  // bfloat16 as its bit pattern

// Each entry point exists for float and for bf16 (overloads), each compiled for AVX-512, AVX2 and the baseline.
#define HRM_DECLARE_ENTRY_POINTS(T)                                                                                  \
  void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n, float eps);       \
  void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n, float eps);              \
  void swiglu(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n);                                          \
  void swiglu_computed(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n);                                 \
  void swiglu_backward(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, int64_t n);              \
  void swiglu_backward_computed(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, int64_t n);     \
  void attention(const T* qkv, const float* cos, const float* sin, T* out, float* scratch, int64_t bh0, int64_t bh1, \
                 int64_t H, int64_t S, int64_t D, float scale);                                                      \
  void attention_backward(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv, float* scratch, \
                          int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale);
HRM_DECLARE_ENTRY_POINTS(float)
HRM_DECLARE_ENTRY_POINTS(bf16_bits)
#undef HRM_DECLARE_ENTRY_POINTS

// SwiGLU and its backward on bf16 gates look silu (and its derivative) up in 65536-entry tables where the CPU has
// x86-64-v4 (bit-identical to the *_computed kernels); false computes them. Returns whether the table exists on this
// CPU.
bool set_silu_table(bool enabled);

// Floats of scratch one thread needs for attention and attention_backward.
int64_t attention_scratch_floats(int64_t S, int64_t D);
int64_t attention_backward_scratch_floats(int64_t S, int64_t D);

}  // namespace hrm::nn::kernels
