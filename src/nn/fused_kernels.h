#pragma once
// Entry points of the fused CPU kernels (src/nn/kernels_*.cpp); rows [r0, r1) of contiguous buffers.
// Internal to the library: hrm/nn/fused.h is the tensor-level API.
//
// The kernel files are compiled once per instruction set into their own namespace (CMakeLists.txt: avx512 =
// x86-64-v4, avx2 = x86-64-v3, generic = the baseline; only generic off x86). The functions of
// hrm::nn::kernels itself (src/nn/kernels_dispatch.cpp) forward to the namespace of the active path
// (nn::cpu_isa(): HRM_CPU_ISA, else the best this CPU runs).
#include <cstdint>

namespace hrm::nn::kernels {

using bf16_bits = uint16_t;  // bfloat16 as its bit pattern

// One AdamATan2 step's constants, as the float scalars LibTorch's ops on float tensors use (optim::AdamATan2):
// p = p * decay; m = lerp(m, g, lerp_weight); v = v * beta2 + one_minus_beta2 * g * g;
// p += step_size * atan2(m, sqrt(v) / sqrt_bc2).
struct AdamAtan2Constants {
  float decay, lerp_weight, beta2, one_minus_beta2, sqrt_bc2, step_size;
};

// Each entry point exists for float and for bf16 (overloads).
#define HRM_DECLARE_ENTRY_POINTS(T)                                                                                  \
  void add_rms_norm(const T* x, const T* y, T* out, T* sum_out, int64_t r0, int64_t r1, int64_t n, float eps);       \
  void rms_norm_backward(const T* s, const T* dy, T* ds, int64_t r0, int64_t r1, int64_t n, float eps);              \
  void swiglu(const T* gate_up, T* out, int64_t r0, int64_t r1, int64_t n);                                          \
  void swiglu_backward(const T* gate_up, const T* dy, T* d_gate_up, int64_t r0, int64_t r1, int64_t n);              \
  void attention(const T* qkv, const float* cos, const float* sin, T* out, float* scratch, int64_t bh0, int64_t bh1, \
                 int64_t H, int64_t S, int64_t D, float scale);                                                      \
  void attention_backward(const T* qkv, const float* cos, const float* sin, const T* dout, T* d_qkv, float* scratch, \
                          int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale);

// What each instruction-set namespace defines (SwiGLU computes silu there; the dispatcher adds the table path).
#define HRM_DECLARE_ISA_KERNELS()                                                     \
  HRM_DECLARE_ENTRY_POINTS(float)                                                     \
  HRM_DECLARE_ENTRY_POINTS(bf16_bits)                                                 \
  int64_t attention_scratch_floats(int64_t S, int64_t D);                             \
  int64_t attention_backward_scratch_floats(int64_t S, int64_t D);                    \
  /* exp(x[i]) and 2^x[i] (x[i] <= 0) as the float kernels compute them, for tests */ \
  void vector_exp(const float* x, float* out, int64_t n);                             \
  void vector_exp2_nonpositive(const float* x, float* out, int64_t n);                \
  /* FLOPs of `iterations` rounds of register-only multiply-adds (the ceiling) */     \
  double register_multiply_adds(int64_t iterations);

#if defined(__x86_64__)
#define HRM_KERNEL_ISAS_X86 1
namespace avx512 {
HRM_DECLARE_ISA_KERNELS()
// bf16 SwiGLU with silu(gate) (and, backward, silu'(gate)) looked up per gate value with AVX-512 gathers.
void swiglu_from_table(const float* silu_table, const bf16_bits* gate_up, bf16_bits* out, int64_t r0, int64_t r1,
                       int64_t n);
void swiglu_backward_from_table(const float* silu_table, const float* derivative_table, const bf16_bits* gate_up,
                                const bf16_bits* dy, bf16_bits* d_gate_up, int64_t r0, int64_t r1, int64_t n);
// bf16 attention with QK^T and PV on AVX512-BF16 dot products (only where the CPU has avx512_bf16): D 16, 32, 48
// or 64; q, k and the probabilities rounded to bf16 for the products (FlashAttention's bf16 contract).
void attention_dot(const bf16_bits* qkv, const float* cos, const float* sin, bf16_bits* out, float* scratch,
                   int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D, float scale);
int64_t attention_dot_scratch_floats(int64_t S, int64_t D);
// Its backward (attention_backward's contract): the five products on dot products, P and dS rounded to bf16 for them.
void attention_dot_backward(const bf16_bits* qkv, const float* cos, const float* sin, const bf16_bits* dout,
                            bf16_bits* d_qkv, float* scratch, int64_t bh0, int64_t bh1, int64_t H, int64_t S, int64_t D,
                            float scale);
int64_t attention_dot_backward_scratch_floats(int64_t S, int64_t D);
// As avx2::adam_atan2.
void adam_atan2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, const AdamAtan2Constants& c);
// exp(x[i]) for x[i] <= 0 as that attention computes its probabilities (relative error <= 4.6e-7), for its test.
void exp_nonpositive(const float* x, float* out, int64_t n);
}  // namespace avx512
namespace avx2 {
HRM_DECLARE_ISA_KERNELS()
// Elements [i0, i1) of one AdamATan2 step on float32 p, g, m, v (avx512 and avx2 paths only).
void adam_atan2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, const AdamAtan2Constants& c);
}  // namespace avx2
// bf16 products on AVX512-BF16 dot products (src/nn/kernels_gemm_bf16.cpp; only where the CPU has avx512_bf16).
// B [K, N] (element b[k * k_stride + n * n_stride]) is packed first; K even, N a multiple of 16.
namespace avx512_bf16 {
// With swiglu, B is [gate | up] (N a multiple of 64) and gemm_swiglu_packed writes silu(gate) * up [M, N / 2] with
// silu looked up per bf16 gate in silu_table (the rounded values, as the unfused SwiGLU).
void pack_b(const bf16_bits* b, int64_t k_stride, int64_t n_stride, int64_t K, int64_t N, bool swiglu,
            bf16_bits* packed, int64_t n0, int64_t n1);
// Rows [m0, m1) of C = A B (A [M, K] with row stride lda, C [M, N]).
void gemm_packed(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, int64_t N, bf16_bits* c,
                 int64_t m0, int64_t m1);
// With `product`, the product [M, N] itself (rounded to bf16, [gate | up] as unfused) is written there too.
void gemm_swiglu_packed(const bf16_bits* a, int64_t lda, int64_t K, const bf16_bits* packed, int64_t N,
                        const float* silu_table, bf16_bits* out, int64_t m0, int64_t m1, bf16_bits* product = nullptr);
// FLOPs of `iterations` rounds of register-only vdpbf16ps chains (these kernels' ceiling).
double register_dot_products(int64_t iterations);
}  // namespace avx512_bf16
#else
#define HRM_KERNEL_ISAS_X86 0
#endif
namespace generic {
HRM_DECLARE_ISA_KERNELS()
}

// The dispatching entry points.
HRM_DECLARE_ENTRY_POINTS(float)
HRM_DECLARE_ENTRY_POINTS(bf16_bits)

// SwiGLU and its backward on bf16 gates look silu (and its derivative) up in 65536-entry tables on the avx512 path
// (bit-identical to computing them); false computes them. Returns whether the active path has the table.
bool set_silu_table(bool enabled);

// silu rounded to bf16 per bf16 gate value (65536 floats) where SwiGLU uses the table now, else null.
const float* silu_table_bf16();

// The active path's register_multiply_adds.
double register_multiply_adds(int64_t iterations);

// The active path's AdamATan2 step, bit-identical to LibTorch's ops on its AVX-512 and AVX2 kernels (the same
// roundings, FMAs where they use them, SLEEF's atan2). The avx512 and avx2 paths only: on the generic one the
// per-lane std::atan2 of LibTorch's default kernels made one pass 4x slower than LibTorch's ops (`hrm bench
// --kernels`), so there is none (throws hrm::Error).
void adam_atan2(float* p, const float* g, float* m, float* v, int64_t i0, int64_t i1, const AdamAtan2Constants& c);

// Floats of scratch one thread needs for attention and attention_backward.
int64_t attention_scratch_floats(int64_t S, int64_t D);
int64_t attention_backward_scratch_floats(int64_t S, int64_t D);

}  // namespace hrm::nn::kernels
