#pragma once
// Fused CPU kernels for forward passes that need no gradient: the no-grad cycles of every HRM segment, the extra
// target-Q forward of ACT training, evaluation and inference -- in training with 2x2 cycles, 10 of every 12 module
// calls. LibTorch 1.13 runs each elementwise op of a bf16 block as its own pass with bf16<->float conversions;
// these do one pass in float (vectorised for AVX-512 / AVX2 / the baseline, the path chosen at run time:
// hrm/nn/cpu_isa.h) and round to the tensor's dtype where the reference's op chain rounds.
//
// When autograd wants a graph, they run the fused kernel inside a custom autograd function with a fused backward
// (attention recomputes its probabilities instead of saving them). Off CPU, for other dtypes or non-contiguous
// inputs, and when fused kernels are switched off, every function is the reference's composition of ATen ops.
#include "hrm/nn/cpu_isa.h"
#include "hrm/nn/layers.h"

namespace hrm::nn {

// Which forward dtypes use the fused kernels. `Auto` (the default): bf16 and float32 on the avx512 and avx2
// instruction-set paths, Off on the generic one (there LibTorch's ops are faster: `hrm bench --kernels`). `BFloat16`
// keeps float32 on the op-by-op path, which rounds exactly as the reference does: AdamATan2's update is
// scale-invariant, so an ulp-level change in a small gradient computed with cancellation moves its weight visibly,
// and verify-reference's float32 tolerance fails on one such element with the fused kernels (docs/architecture.md).
// verify_reference therefore runs float32 op by op unless the mode is set explicitly (reference_fused_kernels).
// The environment variable HRM_FUSED_KERNELS=0|bf16|all|auto sets the starting mode (other values: a warning, auto).
enum class FusedKernels { Off, BFloat16, All, Auto };
FusedKernels fused_kernels();                     // the setting
FusedKernels effective_fused_kernels();           // the setting with Auto resolved for the active path
bool fused_kernels_cover(c10::ScalarType dtype);  // whether CPU tensors of dtype take the fused kernels now
void set_fused_kernels(FusedKernels mode);
const char* fused_kernels_name(FusedKernels mode);  // "off", "bf16", "all", "auto"

// The mode for comparisons with the reference at float32 tolerance: `Auto` with float32 fused becomes `BFloat16`
// (float32 op by op, bf16 still fused); explicit modes are what the user asked for and stay.
FusedKernels reference_fused_kernels();

// Sets the mode for one scope and restores the previous one. Not thread-safe against other mode changes.
class ScopedFusedKernels {
 public:
  explicit ScopedFusedKernels(FusedKernels mode);
  ~ScopedFusedKernels();
  ScopedFusedKernels(const ScopedFusedKernels&) = delete;
  ScopedFusedKernels& operator=(const ScopedFusedKernels&) = delete;

 private:
  FusedKernels before_;
};

// SwiGLU with bf16 gates looks silu(gate) up in a 65536-entry table (filled once by the computing kernel, so
// bit-identical) on the avx512 path; false computes it every time (tests, benchmarks). Returns whether the active
// path has the table.
bool set_silu_table(bool enabled);

// rms_norm(x + y) with the sum rounded to x's dtype first (as `x + y` then rms_norm); y may be undefined.
torch::Tensor add_rms_norm(const torch::Tensor& x, const torch::Tensor& y, double eps);

// silu(gate) * up for gate_up = [gate | up] along the last dimension (silu rounded to the dtype, as the reference).
torch::Tensor swiglu(const torch::Tensor& gate_up);

// Non-causal multi-head softmax attention (scale 1/sqrt(head_dim)) from the fused projection qkv
// [B, S, 3*heads, head_dim], q and k rotated when the RoPE tables are defined; returns [B, S, heads*head_dim].
// Fused: per (batch, head) in float, RoPE on the fly, one rounding at the output (as SDPA). Otherwise: rotary,
// then SDPA (LibTorch >= 2) or matmul-softmax-matmul.
torch::Tensor attention(const torch::Tensor& qkv, int64_t num_heads, const RopeTables& rope);

// x [..., in] w[out, in]^T + b (b may be undefined). Fused float32 path (where the build found oneDNN): oneDNN's
// sgemm on LibTorch's OpenMP workers, forward and backward, instead of OpenBLAS's second thread pool (bf16 products
// already go to oneDNN inside LibTorch). Otherwise torch::linear.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});
// swiglu(linear(x, w)) for w = [gate | up] weights [2n, in]: one pass where bf16 products run on the dot-product
// kernels (bf16_products_on_dot_kernels) with the SwiGLU table -- the same roundings, without re-reading the [.., 2n]
// product (written only when a graph needs it for SwiGLU's backward); float32 without a graph where
// linear_swiglu_in_blocks_pays; otherwise the two ops.
torch::Tensor linear_swiglu(const torch::Tensor& x, const torch::Tensor& w);
// Whether float32 linear_swiglu takes w [N, K] in one pass (on oneDNN's sgemm, in row blocks): where w and a block's
// scratch fit one core's L2.
bool linear_swiglu_in_blocks_pays(int64_t N, int64_t K);
// The weights of a self-attention TransformerBlock in the forward dtype (CastedLinear::cast_weight).
struct BlockWeights {
  torch::Tensor qkv, o, gate_up, down;
};
// The block's forward without a graph (GradMode off): h = add_rms_norm(x, o(attention(qkv(x)))), then
// add_rms_norm(h, down(linear_swiglu(h, gate_up))), taken one sequence at a time through all seven steps in one
// parallel region, so that a thread's intermediates stay in its caches instead of going out to memory between ops.
// The same kernels on the same rows as the op-by-op path: the same result, bit for bit. Where bf16 products run on
// the dot-product kernels (with the SwiGLU table) and the dot-product attention takes the head width; elsewhere it
// returns an undefined tensor and the caller runs the modules. Only where the four weights (bf16, packed) and one
// sequence's intermediates fit one core's L2 (block_in_one_pass_fits_l2): the small preset's 0.76 MB on 1-MiB L2s; the
// paper preset's 6.8 MB of weights stream from L3 either way, and there one pass per sequence was 4% slower than the
// ops (`hrm bench --profile`, Zen 5, docs/benchmarks.md).
bool block_in_one_pass_fits_l2(int64_t hidden, int64_t attention_width, int64_t intermediate, int64_t seq_len);
torch::Tensor transformer_block_in_one_pass(const torch::Tensor& x, const BlockWeights& w, int64_t num_heads,
                                            const RopeTables& rope, double eps);
bool linear_uses_onednn();  // whether float32 CPU products take oneDNN's sgemm now
// The widest instruction set oneDNN's kernels use: "avx512", "avx2", "sse41" ("none": a build without oneDNN).
const char* onednn_kernels();
// HRM_CPU_ISA=avx2|generic in the environment stands for a CPU without AVX-512: oneDNN's kernels are capped to match
// (unless ONEDNN_MAX_CPU_ISA is set) and bf16 products take LibTorch's own kernels, as they do on such a CPU. Once
// per process; the CLI and the tests call it first (oneDNN takes a cap only before its first kernel), every fused
// op and product calls it too. A bad HRM_CPU_ISA throws hrm::Error.
void apply_cpu_isa_environment();
// bf16 CPU products (linear, matmul below): LibTorch sends them to oneDNN on AVX-512 CPUs and runs them in its own
// loops elsewhere (~2 GFLOP/s on 2 cores: the bf16 cliff of CPUs without AVX-512, docs/benchmarks.md). There, and
// where oneDNN's bf16 kernels are slower than its float32 ones (!cpu_bf16_products_beat_float32: Intel cores without
// AMX), they run as float32 products of the bf16 operands, rounded to bf16 (the same product: bf16 operands, float
// sums, one rounding). set_ overrides the choice (tests), reset_ returns to it; bf16_product_kernels() names what runs
// them: "oneDNN", "float32 kernels, rounded to bfloat16", "hrm's AVX512-BF16 kernels (oneDNN for other shapes)" (below)
// or "LibTorch's own loops".
bool bf16_products_in_float32();
void set_bf16_products_in_float32(bool on);
void reset_bf16_products_in_float32();
const char* bf16_product_kernels();
// bf16 linear products without bias (K even, N a multiple of 16) on hrm's AVX512-BF16 dot-product kernels, forward
// and the input's gradient, where cpu_bf16_products_on_dot_kernels (AMD cores with AVX512-BF16: oneDNN 2.6's bf16
// kernels reach ~60% of vdpbf16ps's peak there), the fused kernels cover bf16 and the avx512 path is active. set_
// overrides the CPU rule (true throws where why_no_bf16_dot_kernels); reset_bf16_products_in_float32 resets both.
// HRM_BF16_PRODUCTS=auto|onednn|float32|hrm in the environment picks the route of bf16 CPU products for the process
// (auto: the rules above; onednn: LibTorch's own; float32: float32 kernels, rounded; hrm: the dot-product kernels, an
// error where why_no_bf16_dot_kernels); another value is an hrm::Error at the first bf16 product.
bool bf16_products_on_dot_kernels();
void set_bf16_products_on_dot_kernels(bool on);
// Why the dot-product kernels cannot run in this process (the CPU lacks AVX512-BF16, or HRM_CPU_ISA forces a path
// without AVX-512), or nullptr where they can.
const char* why_no_bf16_dot_kernels();
// Whether LibTorch's own bf16 CPU products (torch::linear, torch::matmul) run on oneDNN (else in its loops).
bool libtorch_runs_bf16_products_on_onednn();
// The ceiling of this machine's products in GFLOP/s on all intra-op threads, measured: register-only chains of
// float32 multiply-adds on the active kernel path (cpu_isa), or with bf16_dot of AVX512-BF16 dot products (0 where
// why_no_bf16_dot_kernels). The best of 3 rounds of ~30 ms.
double multiply_add_peak_gflops(bool bf16_dot);
// One AdamATan2 step (optim::AdamATan2) of a parameter in one pass over p, g and the moments m, v, where the fused
// kernels are on (effective_fused_kernels() != Off), the path is avx512 or avx2 (on the generic one LibTorch's ops
// are faster) and all four are contiguous float32 CPU tensors of p's size; returns false, changing nothing, elsewhere.
// The result is LibTorch's op chain's (p.mul_(decay); m.lerp_(g, lerp_weight); v.mul_(beta2).addcmul_(g, g, 1 - beta2);
// p.add_(atan2(m, v.sqrt() / sqrt_bc2), step_size)) on its kernels of the path's width, bit for bit, except where
// LibTorch's vector loops leave a tail (< 2 vectors per thread's chunk) to std::atan2: there atan2 may differ in its
// last bit.
struct AdamAtan2Scalars {
  double decay, lerp_weight, beta2, sqrt_bc2, step_size;
};
bool adam_atan2_update(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                       const AdamAtan2Scalars& s);
// a @ b (torch::matmul), with bf16 CPU products as linear() runs them.
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace hrm::nn
