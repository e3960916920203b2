#include "hrm/nn/fused.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "fused_kernels.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"

#ifdef HRM_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace hrm::nn {
namespace {

// Rows per block of linear_swiglu's one pass: an L2-sized [rows, N] float32 scratch.
int64_t swiglu_block_rows(int64_t N) { return std::clamp<int64_t>((256 << 10) / (4 * N), 16, 256); }

using kernels::bf16_bits;

std::atomic<FusedKernels>& mode_flag() {
  static std::atomic<FusedKernels> flag{[] {
    const char* env = std::getenv("HRM_FUSED_KERNELS");
    const std::string v = env ? env : "";
    if (v == "0" || v == "off") return FusedKernels::Off;
    if (v == "all") return FusedKernels::All;
    if (v == "bf16" || v == "1" || v == "on") return FusedKernels::BFloat16;
    if (!v.empty() && v != "auto")
      std::cerr << "hrm: HRM_FUSED_KERNELS='" << v << "' is not one of 0|off, bf16|1|on, all, auto: using auto\n";
    return FusedKernels::Auto;
  }()};
  return flag;
}

// Which implementation runs: the op-by-op composition (mode off, a dtype the mode does not cover, off CPU,
// non-contiguous), the fused kernel, or -- when autograd wants a graph -- the fused kernel inside a custom autograd
// function with a fused backward (where there is one; otherwise the composition).
enum class Path { Composition, Kernel, KernelWithGraph };

Path path_for(std::initializer_list<const torch::Tensor*> tensors, bool has_backward) {
  apply_cpu_isa_environment();
  const auto dtype = (*tensors.begin())->scalar_type();
  if (!fused_kernels_cover(dtype)) return Path::Composition;
  bool graph = false;
  for (const torch::Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!t->device().is_cpu() || !t->is_contiguous() || t->scalar_type() != dtype) return Path::Composition;
    graph = graph || t->requires_grad();
  }
  cpu_isa();  // resolves HRM_CPU_ISA here, so that a bad value is an error on this thread, not in a kernel's workers
  if (!graph || !torch::GradMode::is_enabled()) return Path::Kernel;
  return has_backward ? Path::KernelWithGraph : Path::Composition;
}

// Splits `rows` into chunks of at least ~16K elements for at::parallel_for.
int64_t grain_for(int64_t row_elements) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elements)); }

// Calls f with a null pointer of the tensor's element type (float, or bfloat16 as its bits): a generic lambda
// then reaches the matching kernel overload through ptr(tensor, type).
template <class F>
void dispatch(const torch::Tensor& t, F&& f) {
  if (t.scalar_type() == torch::kFloat)
    f(static_cast<float*>(nullptr));
  else
    f(static_cast<bf16_bits*>(nullptr));
}

template <class T>
T* ptr(const torch::Tensor& t, T* /*type*/) {
  return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr;
}

// ---------------------------------------------------------------- kernels on tensors (no autograd)
// sum_out (optional) receives x + y rounded to the dtype.
torch::Tensor add_rms_norm_kernel(const torch::Tensor& x, const torch::Tensor& y, double eps,
                                  const torch::Tensor& sum_out = {}) {
  RECORD_FUNCTION("hrm::add_rms_norm", std::vector<c10::IValue>());
  const int64_t n = x.size(-1), rows = x.numel() / n;
  torch::Tensor out = torch::empty_like(x);
  at::parallel_for(0, rows, grain_for(n), [&](int64_t r0, int64_t r1) {
    dispatch(x, [&](auto t) {
      kernels::add_rms_norm(ptr(x, t), ptr(y, t), ptr(out, t), ptr(sum_out, t), r0, r1, n, float(eps));
    });
  });
  return out;
}

torch::Tensor rms_norm_backward_kernel(const torch::Tensor& s, const torch::Tensor& dy, double eps) {
  RECORD_FUNCTION("hrm::rms_norm_backward", std::vector<c10::IValue>());
  const int64_t n = s.size(-1), rows = s.numel() / n;
  torch::Tensor ds = torch::empty_like(s);
  at::parallel_for(0, rows, grain_for(n), [&](int64_t r0, int64_t r1) {
    dispatch(s, [&](auto t) { kernels::rms_norm_backward(ptr(s, t), ptr(dy, t), ptr(ds, t), r0, r1, n, float(eps)); });
  });
  return ds;
}

torch::Tensor swiglu_kernel(const torch::Tensor& gate_up) {
  RECORD_FUNCTION("hrm::swiglu", std::vector<c10::IValue>());
  const int64_t n = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * n);
  std::vector<int64_t> shape = gate_up.sizes().vec();
  shape.back() = n;
  torch::Tensor out = torch::empty(shape, gate_up.options());
  at::parallel_for(0, rows, grain_for(3 * n), [&](int64_t r0, int64_t r1) {
    dispatch(gate_up, [&](auto t) { kernels::swiglu(ptr(gate_up, t), ptr(out, t), r0, r1, n); });
  });
  return out;
}

torch::Tensor swiglu_backward_kernel(const torch::Tensor& gate_up, const torch::Tensor& dy) {
  RECORD_FUNCTION("hrm::swiglu_backward", std::vector<c10::IValue>());
  const int64_t n = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * n);
  torch::Tensor d_gate_up = torch::empty_like(gate_up);
  at::parallel_for(0, rows, grain_for(5 * n), [&](int64_t r0, int64_t r1) {
    dispatch(gate_up,
             [&](auto t) { kernels::swiglu_backward(ptr(gate_up, t), ptr(dy, t), ptr(d_gate_up, t), r0, r1, n); });
  });
  return d_gate_up;
}

#if HRM_KERNEL_ISAS_X86
// bf16 attention (forward and backward) takes the AVX512-BF16 dot products where bf16 products do and the head
// width suits them (docs/benchmarks.md, 2026-12-07, Zen 4, against the float kernel: forward -18% at 82 tokens and
// head width 16, -39% at width 64, -20% at 901 tokens; backward -23% at 901 tokens). Its roundings (q, k, P and dS
// to bf16 before each product) are those of LibTorch's bf16 ops, which round every intermediate.
bool dot_attention_takes(c10::ScalarType dtype, int64_t D) {
  return dtype == torch::kBFloat16 && D >= 16 && D <= 64 && D % 16 == 0 && bf16_products_on_dot_kernels();
}
#else
bool dot_attention_takes(c10::ScalarType, int64_t) { return false; }
#endif

// The attention forward ([B, S, H*D]) or, when dout is given, its gradient with respect to qkv.
torch::Tensor attention_kernel(const torch::Tensor& qkv, int64_t H, const RopeTables& rope,
                               const torch::Tensor& dout = {}) {
  const bool backward = dout.defined();
  const int64_t B = qkv.size(0), S = qkv.size(1), D = qkv.size(3);
  // (the dot-product kernels index one sequence's qkv rows with 32-bit gathers)
  const bool dot = dot_attention_takes(qkv.scalar_type(), D) && S * 3 * H * D < (int64_t{1} << 31);
  RECORD_FUNCTION(backward ? (dot ? "hrm::attention_bf16_dot_backward" : "hrm::attention_backward")
                           : (dot ? "hrm::attention_bf16_dot" : "hrm::attention"),
                  std::vector<c10::IValue>());
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  const float* cos = rope.cos.defined() ? rope.cos.data_ptr<float>() : nullptr;
  const float* sin = rope.sin.defined() ? rope.sin.data_ptr<float>() : nullptr;
  torch::Tensor out = backward ? torch::empty_like(qkv) : torch::empty({B, S, H * D}, qkv.options());
  int64_t scratch_floats =
      backward ? kernels::attention_backward_scratch_floats(S, D) : kernels::attention_scratch_floats(S, D);
#if HRM_KERNEL_ISAS_X86
  if (dot)
    scratch_floats = backward ? kernels::avx512::attention_dot_backward_scratch_floats(S, D)
                              : kernels::avx512::attention_dot_scratch_floats(S, D);
#endif
  at::parallel_for(0, B * H, 1, [&](int64_t bh0, int64_t bh1) {
    std::vector<float> scratch(static_cast<size_t>(scratch_floats));
#if HRM_KERNEL_ISAS_X86
    if (dot) {
      const auto* in = ptr(qkv, static_cast<bf16_bits*>(nullptr));
      auto* o = ptr(out, static_cast<bf16_bits*>(nullptr));
      if (backward)
        return kernels::avx512::attention_dot_backward(in, cos, sin, ptr(dout, static_cast<bf16_bits*>(nullptr)), o,
                                                       scratch.data(), bh0, bh1, H, S, D, scale);
      return kernels::avx512::attention_dot(in, cos, sin, o, scratch.data(), bh0, bh1, H, S, D, scale);
    }
#endif
    dispatch(qkv, [&](auto t) {
      if (backward)
        kernels::attention_backward(ptr(qkv, t), cos, sin, ptr(dout, t), ptr(out, t), scratch.data(), bh0, bh1, H, S, D,
                                    scale);
      else
        kernels::attention(ptr(qkv, t), cos, sin, ptr(out, t), scratch.data(), bh0, bh1, H, S, D, scale);
    });
  });
  return out;
}

const char* onednn_isa_name() {
#ifdef HRM_HAVE_DNNL
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto has = [&](dnnl_cpu_isa_t bits) {
    return (isa & static_cast<unsigned>(bits)) == static_cast<unsigned>(bits);
  };
  return has(dnnl_cpu_isa_avx512_core) ? "avx512" : has(dnnl_cpu_isa_avx2) ? "avx2" : "sse41";
#else
  return "none";
#endif
}

#ifdef HRM_HAVE_DNNL
// C [M, N] = op(A) op(B) + beta C, row-major float32, by oneDNN's sgemm. It runs on LibTorch's OpenMP workers;
// OpenBLAS (what LibTorch 1.13 calls for float32) runs its own pthread pool, which spins against OpenMP's on a
// small machine (docs/benchmarks.md).
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float beta,
           float* C) {
  apply_cpu_isa_environment();
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  const auto product = [&](int64_t k0, int64_t k1, const float* a, int64_t lda_used, float beta_used) {
    const float* b = B + (trans_b ? k0 : k0 * ldb);
    const dnnl_status_t status =
        dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, k1 - k0, 1.0f, a, lda_used, b, ldb, beta_used, C, N);
    TORCH_CHECK(status == dnnl_success, "hrm: oneDNN sgemm failed (status ", static_cast<int>(status), ") for [", M,
                " x ", K, "] x [", K, " x ", N, "]");
  };
  // oneDNN's AVX2 sgemm reads a transposed A whose rows lie a multiple of 2 KiB apart 1.3-2.3x slower (L1 set
  // conflicts; its AVX-512 kernels do not): such an A goes through a copy with 64 bytes more per row where the copy
  // costs less than it saves, i.e. for at most 512 columns of C (docs/benchmarks.md, 2026-12-07). The copy goes in
  // blocks of 4096 rows (the reduction's), so that it stays small and in cache for the product that reads it.
  if (!(trans_a && lda % 512 == 0 && N <= 512 && std::strcmp(onednn_isa_name(), "avx2") == 0))
    return product(0, K, A, lda, beta);
  RECORD_FUNCTION("hrm::sgemm_pad_rows", std::vector<c10::IValue>());
  constexpr int64_t kBlockRows = 4096;
  const int64_t padded_lda = lda + 16;
  torch::Tensor block = torch::empty({std::min(K, kBlockRows), padded_lda}, torch::kFloat);
  float* dst = block.data_ptr<float>();
  for (int64_t k0 = 0; k0 < K; k0 += kBlockRows) {
    const int64_t k1 = std::min(K, k0 + kBlockRows);
    at::parallel_for(k0, k1, grain_for(lda), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) std::memcpy(dst + (r - k0) * padded_lda, A + r * lda, sizeof(float) * lda);
    });
    product(k0, k1, dst, padded_lda, k0 == 0 ? beta : 1.0f);
  }
}

// x [..., K] times w [N, K] transposed, plus b [N] when defined; M, N, K > 0 (linear() sends the rest to LibTorch).
torch::Tensor linear_kernel(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  RECORD_FUNCTION("hrm::linear", std::vector<c10::IValue>());
  const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = N;
  torch::Tensor out = torch::empty(shape, x.options());
  if (b.defined()) out.view({M, N}).copy_(b.expand({M, N}));
  sgemm(false, true, M, N, K, x.data_ptr<float>(), w.data_ptr<float>(), b.defined() ? 1.0f : 0.0f,
        out.data_ptr<float>());
  return out;
}

// swiglu(x w^T) for float32 x [..., K], w [2n, K] without a graph: each thread multiplies blocks of rows into an
// L2-sized [rows, 2n] scratch and takes SwiGLU there, so the [M, 2n] product never goes out to memory and back
// (oneDNN runs single-threaded inside the parallel region). Each block packs all of w again, so it pays only where w
// is small and w with the scratch fits one core's L2 (linear_swiglu_in_blocks_pays): the small preset's w [1024, 128]
// took 7.5 ms against 8.0-8.1 for the two ops on Zen 4 (1 MiB L2), the paper's w [3072, 512] 44-50 against 40-42
// (docs/benchmarks.md, 2026-12-07 05:50); on Zen 3 (512 KiB L2) the small preset's was 3-12% slower than the two ops
// in 6 of 8 runs (`--kernels`, 2026-12-07 21:25).
torch::Tensor linear_swiglu_kernel(const torch::Tensor& x, const torch::Tensor& w) {
  RECORD_FUNCTION("hrm::linear_swiglu", std::vector<c10::IValue>());
  apply_cpu_isa_environment();
  const int64_t K = x.size(-1), N = w.size(0), n = N / 2, M = x.numel() / K;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  torch::Tensor out = torch::empty(shape, x.options());
  const int64_t block = swiglu_block_rows(N);
  const float *px = x.data_ptr<float>(), *pw = w.data_ptr<float>();
  float* po = out.data_ptr<float>();
  at::parallel_for(0, (M + block - 1) / block, 1, [&](int64_t b0, int64_t b1) {
    std::unique_ptr<float[]> gate_up(new float[block * N]);
    for (int64_t r0 = b0 * block; r0 < std::min(M, b1 * block); r0 += block) {
      const int64_t rows = std::min(block, M - r0);
      const dnnl_status_t status =
          dnnl_sgemm('N', 'T', rows, N, K, 1.0f, px + r0 * K, K, pw, K, 0.0f, gate_up.get(), N);
      TORCH_CHECK(status == dnnl_success, "hrm: oneDNN sgemm failed (status ", static_cast<int>(status), ")");
      kernels::swiglu(gate_up.get(), po + r0 * n, 0, rows, n);
    }
  });
  return out;
}
#endif

// x [..., K] w [N, K]^T (+ b [N]) with elements. Empty products and shapes LibTorch should reject (with its message)
// stay torch::linear.
bool product_shapes_ok(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  return x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1) && x.numel() > 0 && w.numel() > 0 &&
         (!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)));
}

#if HRM_KERNEL_ISAS_X86
// B [K, N] at b[k * k_stride + n * n_stride] packed for the dot-product kernels (threads split its column blocks).
torch::Tensor pack_for_dot_products(const bf16_bits* b, int64_t k_stride, int64_t n_stride, int64_t K, int64_t N,
                                    bool swiglu) {
  constexpr int64_t kColumnBlock = 64;
  torch::Tensor packed = torch::empty({K * N}, torch::kBFloat16);
  bf16_bits* p = reinterpret_cast<bf16_bits*>(packed.data_ptr());
  at::parallel_for(0, (N + kColumnBlock - 1) / kColumnBlock, 1, [&](int64_t c0, int64_t c1) {
    kernels::avx512_bf16::pack_b(b, k_stride, n_stride, K, N, swiglu, p, c0 * kColumnBlock,
                                 std::min(N, c1 * kColumnBlock));
  });
  return packed;
}

// C [M, N] = A [M, K] B for bf16 A (contiguous rows) and B [K, N] at b[k * k_stride + n * n_stride], on the
// AVX512-BF16 dot-product kernels: B packed (threads split its column blocks), then threads take rows of C in blocks
// of 48 (the kernel walks them in L1-sized blocks). With a silu table, B is [gate | up] and the result
// silu(gate) * up [M, N / 2] (swiglu of the product, in one pass); with `product` too, the product [M, N] is written
// there as well.
torch::Tensor bf16_dot_product(const torch::Tensor& a, int64_t K, const bf16_bits* b, int64_t k_stride,
                               int64_t n_stride, int64_t N, std::vector<int64_t> shape,
                               const float* silu_table = nullptr, bf16_bits* product = nullptr) {
  namespace dot = kernels::avx512_bf16;
  const int64_t M = a.numel() / K;
  shape.back() = silu_table != nullptr ? N / 2 : N;
  torch::Tensor out = torch::empty(shape, a.options());
  const torch::Tensor packed = pack_for_dot_products(b, k_stride, n_stride, K, N, silu_table != nullptr);
  const bf16_bits* p = reinterpret_cast<const bf16_bits*>(packed.data_ptr());
  constexpr int64_t kRowBlock = 48;
  const bf16_bits* pa = reinterpret_cast<const bf16_bits*>(a.data_ptr());
  bf16_bits* pc = reinterpret_cast<bf16_bits*>(out.data_ptr());
  at::parallel_for(0, (M + kRowBlock - 1) / kRowBlock, 1, [&](int64_t r0, int64_t r1) {
    if (silu_table != nullptr)
      dot::gemm_swiglu_packed(pa, K, K, p, N, silu_table, pc, r0 * kRowBlock, std::min(M, r1 * kRowBlock), product);
    else
      dot::gemm_packed(pa, K, K, p, N, pc, r0 * kRowBlock, std::min(M, r1 * kRowBlock));
  });
  return out;
}

// Whether the dot-product kernels take a [.., K] x [K, N] product with elements: K pairs, whole 16-column vectors.
bool dot_kernels_fit(int64_t K, int64_t N) { return K % 2 == 0 && N % 16 == 0 && K > 0 && N > 0; }

// Whether x [..., K] w [N, K]^T (no bias) runs on the dot-product kernels now: bf16 operands of a product they fit,
// their route chosen (bf16_products_on_dot_kernels); path_for then decides between the kernel and its graph.
bool dot_route_takes(const torch::Tensor& x, const torch::Tensor& w) {
  return x.scalar_type() == torch::kBFloat16 && w.scalar_type() == torch::kBFloat16 && product_shapes_ok(x, w) &&
         dot_kernels_fit(w.size(1), w.size(0)) && bf16_products_on_dot_kernels();
}

// x [..., K] times w [N, K] transposed (bf16, contiguous): y on the dot-product kernels.
torch::Tensor bf16_linear_kernel(const torch::Tensor& x, const torch::Tensor& w) {
  RECORD_FUNCTION("hrm::linear_bf16", std::vector<c10::IValue>());
  const int64_t K = x.size(-1);
  return bf16_dot_product(x, K, reinterpret_cast<const bf16_bits*>(w.data_ptr()), 1, K, w.size(0), x.sizes().vec());
}

// swiglu(x w^T) for w = [gate | up] on the dot-product kernels in one pass (the SwiGLU table on: silu_table_bf16);
// with gate_up (contiguous, [..., 2n]), the product is written there too.
torch::Tensor bf16_linear_swiglu_kernel(const torch::Tensor& x, const torch::Tensor& w,
                                        const torch::Tensor& gate_up = {}) {
  RECORD_FUNCTION("hrm::linear_swiglu_bf16", std::vector<c10::IValue>());
  const int64_t K = x.size(-1);
  return bf16_dot_product(x, K, reinterpret_cast<const bf16_bits*>(w.data_ptr()), 1, K, w.size(0), x.sizes().vec(),
                          kernels::silu_table_bf16(),
                          gate_up.defined() ? reinterpret_cast<bf16_bits*>(gate_up.data_ptr()) : nullptr);
}
#endif

// ---------------------------------------------------------------- autograd functions with fused backward
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#if HRM_KERNEL_ISAS_X86
// The gradients {dx, dw} of the bf16 y = x w^T for dy (contiguous), where ctx's inputs 0 and 1 want them: dx = dy w
// on the dot-product kernels; dw = dy^T x (a long reduction over tokens, which the kernels' tiles do not fit) by
// LibTorch, as its own linear's backward computes it.
variable_list bf16_linear_gradients(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                                    const torch::Tensor& dy) {
  variable_list out{torch::Tensor(), torch::Tensor()};
  const int64_t K = x.size(-1), N = w.size(0);
  const torch::Tensor dy2 = dy.view({-1, N});
  if (ctx->needs_input_grad(0)) {  // dx = dy w
    if (dot_kernels_fit(N, K)) {
      RECORD_FUNCTION("hrm::linear_bf16_backward", std::vector<c10::IValue>());
      out[0] = bf16_dot_product(dy, N, reinterpret_cast<const bf16_bits*>(w.data_ptr()), K, 1, K, x.sizes().vec());
    } else {
      out[0] = dy2.mm(w).view(x.sizes());
    }
  }
  if (ctx->needs_input_grad(1)) out[1] = dy2.t().mm(x.reshape({-1, K}));  // dw = dy^T x
  return out;
}

// bf16 linear without bias on the dot-product kernels, forward and backward.
struct Bf16LinearFunction : torch::autograd::Function<Bf16LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({x, w});
    return bf16_linear_kernel(x, w);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor()};
    const auto saved = ctx->get_saved_variables();
    return bf16_linear_gradients(ctx, saved[0], saved[1], grads[0].contiguous());
  }
};

// swiglu(x w^T) with a graph on the dot-product kernels in one pass: the product [gate | up] goes out beside the
// SwiGLU (its backward needs it) instead of being written, then read back by a SwiGLU pass. The backward is the two
// ops': SwiGLU's, then the product's.
struct Bf16LinearSwigluFunction : torch::autograd::Function<Bf16LinearSwigluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = w.size(0);
    const torch::Tensor gate_up = torch::empty(shape, x.options());
    torch::Tensor out = bf16_linear_swiglu_kernel(x, w, gate_up);
    ctx->save_for_backward({x, w, gate_up});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor()};
    const auto saved = ctx->get_saved_variables();
    return bf16_linear_gradients(ctx, saved[0], saved[1], swiglu_backward_kernel(saved[2], grads[0].contiguous()));
  }
};
#endif

struct AddRmsNormFunction : torch::autograd::Function<AddRmsNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& y, double eps) {
    const torch::Tensor sum = torch::empty_like(x);
    torch::Tensor out = add_rms_norm_kernel(x, y, eps, sum);
    ctx->save_for_backward({sum});
    ctx->saved_data["eps"] = eps;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    const torch::Tensor ds = rms_norm_backward_kernel(ctx->get_saved_variables()[0], grads[0].contiguous(),
                                                      ctx->saved_data["eps"].toDouble());
    return {ds, ds, torch::Tensor()};  // d(x + y)/dx = d(x + y)/dy = 1
  }
};

struct SwigluFunction : torch::autograd::Function<SwigluFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate_up) {
    ctx->save_for_backward({gate_up});
    return swiglu_kernel(gate_up);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {torch::Tensor()};
    return {swiglu_backward_kernel(ctx->get_saved_variables()[0], grads[0].contiguous())};
  }
};

// Saves only qkv (already alive for the projection's graph); the backward recomputes the probabilities.
struct AttentionFunction : torch::autograd::Function<AttentionFunction> {
  // The tables go in as a plain struct: autograd treats tensor arguments as inputs, and these may be undefined.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& qkv, int64_t num_heads,
                               const RopeTables& rope) {
    ctx->save_for_backward({qkv});
    ctx->saved_data["heads"] = num_heads;
    ctx->saved_data["cos"] = rope.cos;
    ctx->saved_data["sin"] = rope.sin;
    return attention_kernel(qkv, num_heads, rope);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out{torch::Tensor(), torch::Tensor(), torch::Tensor()};
    if (!grads[0].defined()) return out;
    const RopeTables rope{ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor()};
    out[0] =
        attention_kernel(ctx->get_saved_variables()[0], ctx->saved_data["heads"].toInt(), rope, grads[0].contiguous());
    return out;
  }
};

#ifdef HRM_HAVE_DNNL
// Without bias: autograd cannot take an undefined tensor as an input; a bias (q_head has one) is added outside.
struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w) {
    ctx->save_for_backward({x, w});
    return linear_kernel(x, w, torch::Tensor());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out{torch::Tensor(), torch::Tensor()};
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1];
    const int64_t K = x.size(-1), N = w.size(0), M = x.numel() / K;
    const torch::Tensor dy = grads[0].contiguous();
    if (ctx->needs_input_grad(0)) {  // dx = dy w
      out[0] = torch::empty_like(x);
      sgemm(false, false, M, K, N, dy.data_ptr<float>(), w.data_ptr<float>(), 0.0f, out[0].data_ptr<float>());
    }
    if (ctx->needs_input_grad(1)) {  // dw = dy^T x
      out[1] = torch::empty_like(w);
      sgemm(true, false, N, K, M, dy.data_ptr<float>(), x.data_ptr<float>(), 0.0f, out[1].data_ptr<float>());
    }
    return out;
  }
};
#endif

}  // namespace

FusedKernels fused_kernels() { return mode_flag().load(std::memory_order_relaxed); }
FusedKernels effective_fused_kernels() {
  const FusedKernels mode = fused_kernels();
  if (mode != FusedKernels::Auto) return mode;
  // bf16 and float32 on the avx512 and avx2 paths; off on the generic one, where LibTorch's own ops are faster
  // (`hrm bench --kernels`, docs/benchmarks.md).
  return cpu_isa() == CpuIsa::Generic ? FusedKernels::Off : FusedKernels::All;
}

bool fused_kernels_cover(c10::ScalarType dtype) {
  const FusedKernels mode = effective_fused_kernels();
  return (dtype == torch::kBFloat16 && mode != FusedKernels::Off) ||
         (dtype == torch::kFloat && mode == FusedKernels::All);
}
void set_fused_kernels(FusedKernels mode) { mode_flag().store(mode, std::memory_order_relaxed); }

FusedKernels reference_fused_kernels() {
  const FusedKernels mode = fused_kernels();
  return mode == FusedKernels::Auto && effective_fused_kernels() == FusedKernels::All ? FusedKernels::BFloat16 : mode;
}
ScopedFusedKernels::ScopedFusedKernels(FusedKernels mode) : before_(fused_kernels()) { set_fused_kernels(mode); }
ScopedFusedKernels::~ScopedFusedKernels() { set_fused_kernels(before_); }
bool set_silu_table(bool enabled) { return kernels::set_silu_table(enabled); }

const char* fused_kernels_name(FusedKernels mode) {
  switch (mode) {
    case FusedKernels::Off: return "off";
    case FusedKernels::BFloat16: return "bf16";
    case FusedKernels::All: return "all";
    case FusedKernels::Auto: return "auto";
  }
  return "?";
}

torch::Tensor add_rms_norm(const torch::Tensor& x, const torch::Tensor& y, double eps) {
  const bool same_shape = !y.defined() || y.sizes() == x.sizes();
  switch (same_shape ? path_for({&x, &y}, /*has_backward=*/y.defined()) : Path::Composition) {
    case Path::Kernel: return add_rms_norm_kernel(x, y, eps);
    case Path::KernelWithGraph: return AddRmsNormFunction::apply(x, y, eps);
    case Path::Composition: break;
  }
  return rms_norm(y.defined() ? x + y : x, eps);
}

torch::Tensor swiglu(const torch::Tensor& gate_up) {
  switch (path_for({&gate_up}, /*has_backward=*/true)) {
    case Path::Kernel: return swiglu_kernel(gate_up);
    case Path::KernelWithGraph: return SwigluFunction::apply(gate_up);
    case Path::Composition: break;
  }
  return swiglu_ops(gate_up);
}

torch::Tensor attention(const torch::Tensor& qkv, int64_t num_heads, const RopeTables& rope) {
  const int64_t S = qkv.size(1), D = qkv.size(3), H = num_heads;
  const bool rotate = rope.cos.defined();
  const bool tables_ok =
      !rotate ||
      (rope.cos.scalar_type() == torch::kFloat && rope.sin.scalar_type() == torch::kFloat && rope.cos.is_contiguous() &&
       rope.sin.is_contiguous() && rope.cos.size(0) >= S && rope.cos.size(1) == D && D % 2 == 0);
  switch (tables_ok ? path_for({&qkv}, /*has_backward=*/true) : Path::Composition) {
    case Path::Kernel: return attention_kernel(qkv, H, rope);
    case Path::KernelWithGraph: return AttentionFunction::apply(qkv, H, rope);
    case Path::Composition: break;
  }
  return attention_ops(qkv, H, rope);
}

// A forced avx2 or generic path stands for a CPU without AVX-512. LibTorch sends bf16 products to oneDNN by the CPU's
// own flags, so it is told too: oneDNN capped below AVX-512 (by the forced path or by ONEDNN_MAX_CPU_ISA) could not
// run them (they then take bf16_products_in_float32, as on such a CPU). oneDNN takes a cap only before its first
// kernel runs, hence once, as early as the process can.
void apply_cpu_isa_environment() {
  static const bool done = [] {
    const char* forced = std::getenv("HRM_CPU_ISA");
    const CpuIsa isa = forced == nullptr || *forced == '\0' ? CpuIsa::Avx512 : parse_cpu_isa(forced, "HRM_CPU_ISA");
    bool onednn_below_avx512 = false;
#ifdef HRM_HAVE_DNNL
    if (isa != CpuIsa::Avx512 && std::getenv("ONEDNN_MAX_CPU_ISA") == nullptr &&
        std::getenv("DNNL_MAX_CPU_ISA") == nullptr &&
        dnnl_set_max_cpu_isa(isa == CpuIsa::Generic ? dnnl_cpu_isa_sse41 : dnnl_cpu_isa_avx2) != dnnl_success)
      std::cerr << "hrm: HRM_CPU_ISA=" << forced << " could not cap oneDNN's kernels (it had already run one): "
                << "float32 products keep its " << onednn_isa_name() << " kernels\n";
    onednn_below_avx512 = std::string(onednn_isa_name()) != "avx512";
#endif
    if (isa != CpuIsa::Avx512 || onednn_below_avx512) at::globalContext().setUserEnabledMkldnn(false);
    return true;
  }();
  (void)done;
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  apply_cpu_isa_environment();
  // The same product as LibTorch's bf16 one (bf16 operands, float sums, one rounding to bf16) on float32 kernels.
  if (x.scalar_type() == torch::kBFloat16 && w.scalar_type() == torch::kBFloat16 &&
      (!b.defined() || b.scalar_type() == torch::kBFloat16) && x.device().is_cpu() && bf16_products_in_float32()) {
    const auto up = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat) : t; };
    return linear(up(x), up(w), up(b)).to(torch::kBFloat16);
  }
#if HRM_KERNEL_ISAS_X86
  if (!b.defined() && dot_route_takes(x, w)) {
    switch (path_for({&x, &w}, /*has_backward=*/true)) {
      case Path::Kernel: return bf16_linear_kernel(x, w);
      case Path::KernelWithGraph: return Bf16LinearFunction::apply(x, w);
      case Path::Composition: break;
    }
  }
#endif
#ifdef HRM_HAVE_DNNL
  if (x.scalar_type() == torch::kFloat && product_shapes_ok(x, w, b)) {
    switch (path_for({&x, &w, &b}, /*has_backward=*/true)) {
      case Path::Kernel: return linear_kernel(x, w, b);
      case Path::KernelWithGraph: {
        torch::Tensor y = LinearFunction::apply(x, w);
        return b.defined() ? y + b : y;
      }
      case Path::Composition: break;
    }
  }
#endif
  // A [B, M, K] view whose last two dims are transposed (mlp_t mixes tokens on x.transpose(1, 2)): LibTorch 1.13
  // runs it as B products with a transposed operand, which is how the published code's fixtures were computed;
  // LibTorch >= 2.0 copies it into [B*M, K] first when w requires grad, another summation order
  // (docs/reference-parity.md). Spelling out 1.13's product keeps the result independent of the LibTorch version.
  if (x.dim() == 3 && w.dim() == 2 && x.size(2) == w.size(1) && x.stride(2) != 1 &&
      x.stride(0) == x.size(1) * x.size(2)) {
    const torch::Tensor y = torch::bmm(x, w.t().expand({x.size(0), w.size(1), w.size(0)}));
    return b.defined() ? y + b : y;
  }
  return b.defined() ? torch::linear(x, w, b) : torch::linear(x, w);
}

torch::Tensor linear_swiglu(const torch::Tensor& x, const torch::Tensor& w) {
#if HRM_KERNEL_ISAS_X86
  // [gate | up] blocks of 32 columns each: 2n a multiple of 64
  if (dot_route_takes(x, w) && w.size(0) % 64 == 0)
    if (kernels::silu_table_bf16() != nullptr) {
      switch (path_for({&x, &w}, /*has_backward=*/true)) {
        case Path::Kernel: return bf16_linear_swiglu_kernel(x, w);
        case Path::KernelWithGraph: return Bf16LinearSwigluFunction::apply(x, w);
        case Path::Composition: break;
      }
    }
#endif
#ifdef HRM_HAVE_DNNL
  if (x.scalar_type() == torch::kFloat && product_shapes_ok(x, w) && w.size(0) % 2 == 0 &&
      linear_swiglu_in_blocks_pays(w.size(0), w.size(1)) && path_for({&x, &w}, /*has_backward=*/false) == Path::Kernel)
    return linear_swiglu_kernel(x, w);
#endif
  return swiglu(nn::linear(x, w));
}

bool block_in_one_pass_fits_l2(int64_t hidden, int64_t attention_width, int64_t intermediate, int64_t seq_len) {
  const int64_t weights = hidden * (3 * attention_width + attention_width + 3 * intermediate);
  const int64_t sequence = seq_len * (4 * attention_width + 3 * hidden + intermediate);
  return 2 * (weights + sequence) <= cpu_l2_cache_bytes();
}

torch::Tensor transformer_block_in_one_pass(const torch::Tensor& x, const BlockWeights& w, int64_t num_heads,
                                            const RopeTables& rope, double eps) {
#if HRM_KERNEL_ISAS_X86
  const auto bf16 = torch::kBFloat16;
  if (torch::GradMode::is_enabled() || x.dim() != 3 || x.scalar_type() != bf16 || num_heads <= 0) return {};
  for (const torch::Tensor* t : {&w.qkv, &w.o, &w.gate_up, &w.down})
    if (!t->defined() || t->dim() != 2 || t->scalar_type() != bf16) return {};
  const int64_t B = x.size(0), S = x.size(1), K = x.size(2), HD = w.o.size(1), D = HD / num_heads;
  const int64_t N3 = w.qkv.size(0), I = w.gate_up.size(0) / 2;
  const bool shapes = B > 0 && S > 0 && HD % num_heads == 0 && N3 == 3 * HD && w.qkv.size(1) == K && w.o.size(0) == K &&
                      w.gate_up.size(1) == K && w.gate_up.size(0) % 64 == 0 && w.down.size(0) == K &&
                      w.down.size(1) == I && S * N3 < (int64_t{1} << 31);
  if (!shapes || !dot_route_takes(x, w.qkv) || !dot_kernels_fit(HD, K) || !dot_kernels_fit(K, 2 * I) ||
      !dot_kernels_fit(I, K) || !dot_attention_takes(bf16, D) ||
      path_for({&x, &w.qkv, &w.o, &w.gate_up, &w.down}, /*has_backward=*/false) != Path::Kernel)
    return {};
  const float* silu_table = kernels::silu_table_bf16();
  if (silu_table == nullptr || !block_in_one_pass_fits_l2(K, HD, I, S)) return {};
  RECORD_FUNCTION("hrm::transformer_block_bf16", std::vector<c10::IValue>());
  namespace dot = kernels::avx512_bf16;
  const auto bits = [](const torch::Tensor& t) { return reinterpret_cast<const bf16_bits*>(t.data_ptr()); };
  const torch::Tensor qkv_packed = pack_for_dot_products(bits(w.qkv), 1, K, K, N3, false);
  const torch::Tensor o_packed = pack_for_dot_products(bits(w.o), 1, HD, HD, K, false);
  const torch::Tensor gate_up_packed = pack_for_dot_products(bits(w.gate_up), 1, K, K, 2 * I, true);
  const torch::Tensor down_packed = pack_for_dot_products(bits(w.down), 1, I, I, K, false);
  const float* cos = rope.cos.defined() ? rope.cos.data_ptr<float>() : nullptr;
  const float* sin = rope.sin.defined() ? rope.sin.data_ptr<float>() : nullptr;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  torch::Tensor out = torch::empty_like(x);
  const bf16_bits* px = bits(x);
  bf16_bits* pout = reinterpret_cast<bf16_bits*>(out.data_ptr());
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    // one sequence's intermediates, reused for the next: they stay in this core's caches
    // (every element is written before it is read: no zero fill)
    const std::unique_ptr<bf16_bits[]> rows(new bf16_bits[static_cast<size_t>(S * (N3 + HD + 3 * K + I))]);
    bf16_bits *qkv = rows.get(), *attn = qkv + S * N3, *o = attn + S * HD, *h = o + S * K, *mid = h + S * K;
    bf16_bits* down = mid + S * I;
    std::vector<float> scratch(static_cast<size_t>(kernels::avx512::attention_dot_scratch_floats(S, D)));
    for (int64_t b = b0; b < b1; ++b) {
      const bf16_bits* xb = px + b * S * K;
      dot::gemm_packed(xb, K, K, bits(qkv_packed), N3, qkv, 0, S);
      kernels::avx512::attention_dot(qkv, cos, sin, attn, scratch.data(), 0, num_heads, num_heads, S, D, scale);
      dot::gemm_packed(attn, HD, HD, bits(o_packed), K, o, 0, S);
      kernels::add_rms_norm(xb, o, h, nullptr, 0, S, K, static_cast<float>(eps));
      dot::gemm_swiglu_packed(h, K, K, bits(gate_up_packed), 2 * I, silu_table, mid, 0, S);
      dot::gemm_packed(mid, I, I, bits(down_packed), K, down, 0, S);
      kernels::add_rms_norm(h, down, pout + b * S * K, nullptr, 0, S, K, static_cast<float>(eps));
    }
  });
  return out;
#else
  (void)x, (void)w, (void)num_heads, (void)rope, (void)eps;
  return {};
#endif
}

bool linear_swiglu_in_blocks_pays(int64_t N, int64_t K) {
  return N * K <= (128 << 10) && 4 * (N * K + swiglu_block_rows(N) * N) <= cpu_l2_cache_bytes();
}

const char* onednn_kernels() {
  apply_cpu_isa_environment();
  return onednn_isa_name();
}

// LibTorch's own test (>= 1.13) for sending bf16 products to oneDNN: its oneDNN route is on and the CPU has AVX-512
// BW/VL/DQ (the avx512 path's set). Elsewhere it runs them in loops at ~2 GFLOP/s.
bool libtorch_runs_bf16_products_on_onednn() {
  apply_cpu_isa_environment();
  const std::vector<CpuIsa> isas = supported_cpu_isas();
  const bool avx512 = std::find(isas.begin(), isas.end(), CpuIsa::Avx512) != isas.end();
  return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() && avx512;
}

namespace {
bool cpu_has_bf16_dot_instructions() {
#if HRM_KERNEL_ISAS_X86
  static const bool has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("x86-64-v4");
  return has;
#else
  return false;
#endif
}
}  // namespace

const char* why_no_bf16_dot_kernels() {
  if (!cpu_has_bf16_dot_instructions()) return "this CPU lacks avx512_bf16";
  if (cpu_isa() != CpuIsa::Avx512) return "the kernel path is not avx512 (HRM_CPU_ISA)";
  return nullptr;
}

namespace {
// Where bf16 CPU products run: LibTorch's own route (oneDNN on AVX-512 CPUs, its loops elsewhere), float32 kernels
// rounded to bf16, or hrm's AVX512-BF16 dot-product kernels.
enum class Bf16Route { LibTorch, Float32, Dot };

// HRM_BF16_PRODUCTS=onednn|float32|hrm, else (auto) the CPU's rules: float32 where LibTorch has no fast bf16 products
// or oneDNN's bf16 kernels lose to its float32 ones (Intel cores without AMX); the dot-product kernels where
// cpu_bf16_products_on_dot_kernels; LibTorch's route elsewhere. Once per process; a bad value throws every time.
Bf16Route default_bf16_route() {
  static const Bf16Route route = [] {
    const char* env = std::getenv("HRM_BF16_PRODUCTS");
    const std::string v = env ? env : "";
    if (v == "onednn") return Bf16Route::LibTorch;
    if (v == "float32") return Bf16Route::Float32;
    if (v == "hrm") {
      if (const char* why = why_no_bf16_dot_kernels())
        throw Error(std::string("HRM_BF16_PRODUCTS=hrm: the AVX512-BF16 dot-product kernels cannot run: ") + why);
      return Bf16Route::Dot;
    }
    if (!v.empty() && v != "auto")
      throw Error("HRM_BF16_PRODUCTS='" + v + "' is not one of auto, onednn, float32, hrm");
    if (!libtorch_runs_bf16_products_on_onednn() || !cpu_bf16_products_beat_float32()) return Bf16Route::Float32;
    // the instructions only: bf16_products_on_dot_kernels checks the active path, which set_cpu_isa may change
    return cpu_bf16_products_on_dot_kernels() && cpu_has_bf16_dot_instructions() ? Bf16Route::Dot : Bf16Route::LibTorch;
  }();
  return route;
}

constexpr int kUnset = -1;
std::atomic<int> g_bf16_route{kUnset};  // a set_ override of the default

Bf16Route bf16_route() {
  const int v = g_bf16_route.load(std::memory_order_relaxed);
  return v == kUnset ? default_bf16_route() : static_cast<Bf16Route>(v);
}

// Route `on` when on, else the default unless the default is `on` (then LibTorch's).
void set_bf16_route(Bf16Route route, bool on) {
  const Bf16Route off = default_bf16_route() == route ? Bf16Route::LibTorch : default_bf16_route();
  g_bf16_route.store(static_cast<int>(on ? route : off), std::memory_order_relaxed);
}
}  // namespace

bool bf16_products_in_float32() { return bf16_route() == Bf16Route::Float32; }
void set_bf16_products_in_float32(bool on) { set_bf16_route(Bf16Route::Float32, on); }
void reset_bf16_products_in_float32() { g_bf16_route.store(kUnset, std::memory_order_relaxed); }

bool bf16_products_on_dot_kernels() {
  return bf16_route() == Bf16Route::Dot && fused_kernels_cover(torch::kBFloat16) && !why_no_bf16_dot_kernels();
}
void set_bf16_products_on_dot_kernels(bool on) {
  if (const char* why = on ? why_no_bf16_dot_kernels() : nullptr)
    throw Error(std::string("bf16 products on AVX512-BF16 dot-product kernels: ") + why);
  set_bf16_route(Bf16Route::Dot, on);
}

const char* bf16_product_kernels() {
  if (bf16_products_in_float32()) return "float32 kernels, rounded to bfloat16";
  if (bf16_products_on_dot_kernels())
    return "hrm's AVX512-BF16 kernels (attention's too at head widths 16-64; oneDNN for other shapes)";
  return libtorch_runs_bf16_products_on_onednn() ? "oneDNN" : "LibTorch's own loops";
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() == torch::kBFloat16 && b.scalar_type() == torch::kBFloat16 && a.device().is_cpu() &&
      bf16_products_in_float32())
    return torch::matmul(a.to(torch::kFloat), b.to(torch::kFloat)).to(torch::kBFloat16);
  return torch::matmul(a, b);
}

double multiply_add_peak_gflops(bool bf16_dot) {
  if (bf16_dot && why_no_bf16_dot_kernels() != nullptr) return 0;
  constexpr int64_t kIterations = 8 << 20;  // ~30 ms per round at one 16-lane FMA per cycle
  const int threads = at::get_num_threads();
#if HRM_KERNEL_ISAS_X86
  const auto loop = bf16_dot ? kernels::avx512_bf16::register_dot_products : kernels::register_multiply_adds;
#else
  const auto loop = kernels::register_multiply_adds;
#endif
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    std::vector<double> flops(static_cast<size_t>(threads), 0.0);
    const auto start = std::chrono::steady_clock::now();
    at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) flops[t] = loop(kIterations);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds / 1e9);
  }
  return best;
}

bool adam_atan2_update(const torch::Tensor& p, const torch::Tensor& g, const torch::Tensor& m, const torch::Tensor& v,
                       const AdamAtan2Scalars& s) {
  // no kernel on the generic path (kernels::adam_atan2)
  if (effective_fused_kernels() == FusedKernels::Off || cpu_isa() == CpuIsa::Generic) return false;
  for (const torch::Tensor* t : {&p, &g, &m, &v})
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != torch::kFloat || !t->is_contiguous() ||
        t->numel() != p.numel())
      return false;
  RECORD_FUNCTION("hrm::adam_atan2", std::vector<c10::IValue>());
  // The double scalars become float as LibTorch's ops on float tensors take them.
  const kernels::AdamAtan2Constants c{static_cast<float>(s.decay),    static_cast<float>(s.lerp_weight),
                                      static_cast<float>(s.beta2),    static_cast<float>(1 - s.beta2),
                                      static_cast<float>(s.sqrt_bc2), static_cast<float>(s.step_size)};
  float *pp = p.data_ptr<float>(), *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  at::parallel_for(0, p.numel(), 16384,
                   [&](int64_t i0, int64_t i1) { kernels::adam_atan2(pp, gp, mp, vp, i0, i1, c); });
  for (const torch::Tensor* t : {&p, &m, &v}) torch::autograd::impl::bump_version(*t);  // as in-place ops do
  return true;
}

bool linear_uses_onednn() {
#ifdef HRM_HAVE_DNNL
  return fused_kernels_cover(torch::kFloat);
#else
  return false;
#endif
}

}  // namespace hrm::nn
