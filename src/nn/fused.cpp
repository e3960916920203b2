#include "hrm/nn/fused.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "fused_kernels.h"

namespace hrm::nn {
namespace {

using namespace kernels;

std::atomic<FusedKernels>& mode_flag() {
  static std::atomic<FusedKernels> flag{[] {
    const char* env = std::getenv("HRM_FUSED_KERNELS");
    const std::string v = env ? env : "";
    if (v == "0" || v == "off") return FusedKernels::Off;
    if (v == "all") return FusedKernels::All;
    return FusedKernels::BFloat16;
  }()};
  return flag;
}

// Whether the fused kernel may run: no autograd graph wanted, CPU, float32/bfloat16, contiguous.
// Whether the fused kernel may run: no autograd graph wanted, CPU, contiguous, a dtype the mode covers.
bool fusable(std::initializer_list<const torch::Tensor*> tensors) {
  const FusedKernels mode = fused_kernels();
  const auto dtype = (*tensors.begin())->scalar_type();
  if (!(dtype == torch::kBFloat16 && mode != FusedKernels::Off) && !(dtype == torch::kFloat && mode == FusedKernels::All))
    return false;
  const bool grad = torch::GradMode::is_enabled();
  for (const torch::Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!t->device().is_cpu() || !t->is_contiguous() || t->scalar_type() != dtype) return false;
    if (grad && t->requires_grad()) return false;
  }
  return true;
}

// Splits `rows` into chunks of at least ~16K elements for at::parallel_for.
int64_t grain_for(int64_t row_elements) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elements)); }

template <class F32, class BF16>
void dispatch(const torch::Tensor& t, F32&& f32, BF16&& bf16) {
  if (t.scalar_type() == torch::kFloat) f32();
  else bf16();
}

template <class T>
T* ptr(const torch::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.data_ptr()) : nullptr;
}

}  // namespace

FusedKernels fused_kernels() { return mode_flag().load(std::memory_order_relaxed); }
void set_fused_kernels(FusedKernels mode) { mode_flag().store(mode, std::memory_order_relaxed); }

torch::Tensor add_rms_norm(const torch::Tensor& x, const torch::Tensor& y, double eps) {
  if (!fusable({&x, &y}) || (y.defined() && y.sizes() != x.sizes()))
    return rms_norm(y.defined() ? x + y : x, eps);
  RECORD_FUNCTION("hrm::add_rms_norm", std::vector<c10::IValue>());
  const int64_t n = x.size(-1), rows = x.numel() / n;
  torch::Tensor out = torch::empty_like(x);
  at::parallel_for(0, rows, grain_for(n), [&](int64_t r0, int64_t r1) {
    dispatch(
        x, [&] { add_rms_norm_f32(ptr<float>(x), ptr<float>(y), ptr<float>(out), r0, r1, n, float(eps)); },
        [&] {
          add_rms_norm_bf16(ptr<bf16_bits>(x), ptr<bf16_bits>(y), ptr<bf16_bits>(out), r0, r1, n, float(eps));
        });
  });
  return out;
}

torch::Tensor swiglu(const torch::Tensor& gate_up) {
  if (!fusable({&gate_up})) {
    const auto parts = gate_up.chunk(2, -1);
    return torch::silu(parts[0]) * parts[1];
  }
  RECORD_FUNCTION("hrm::swiglu", std::vector<c10::IValue>());
  const int64_t n = gate_up.size(-1) / 2, rows = gate_up.numel() / (2 * n);
  std::vector<int64_t> shape = gate_up.sizes().vec();
  shape.back() = n;
  torch::Tensor out = torch::empty(shape, gate_up.options());
  at::parallel_for(0, rows, grain_for(3 * n), [&](int64_t r0, int64_t r1) {
    dispatch(
        gate_up, [&] { swiglu_f32(ptr<float>(gate_up), ptr<float>(out), r0, r1, n); },
        [&] { swiglu_bf16(ptr<bf16_bits>(gate_up), ptr<bf16_bits>(out), r0, r1, n); });
  });
  return out;
}

torch::Tensor attention(const torch::Tensor& qkv, int64_t num_heads, const RopeTables& rope) {
  const int64_t B = qkv.size(0), S = qkv.size(1), D = qkv.size(3), H = num_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const bool rotate = rope.cos.defined();
  const bool tables_ok = !rotate || (rope.cos.scalar_type() == torch::kFloat && rope.sin.scalar_type() == torch::kFloat &&
                                     rope.cos.is_contiguous() && rope.sin.is_contiguous() && rope.cos.size(0) >= S &&
                                     rope.cos.size(1) == D);
  if (!tables_ok || !fusable({&qkv})) {
    torch::Tensor qk = qkv.narrow(2, 0, 2 * H);  // queries and keys rotate together
    if (rotate) qk = apply_rotary(qk, rope.cos.narrow(0, 0, S), rope.sin.narrow(0, 0, S));
    // [B, heads, S, head_dim]
    const torch::Tensor q = qk.narrow(2, 0, H).transpose(1, 2), k = qk.narrow(2, H, H).transpose(1, 2);
    const torch::Tensor v = qkv.narrow(2, 2 * H, H).transpose(1, 2);
#if TORCH_VERSION_MAJOR >= 2
    const torch::Tensor attn = at::scaled_dot_product_attention(q, k, v);
#else
    const torch::Tensor attn = torch::matmul(torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * scale, -1), v);
#endif
    return attn.transpose(1, 2).reshape({B, S, H * D});
  }
  RECORD_FUNCTION("hrm::attention", std::vector<c10::IValue>());
  torch::Tensor out = torch::empty({B, S, H * D}, qkv.options());
  const float* cos = rotate ? rope.cos.data_ptr<float>() : nullptr;
  const float* sin = rotate ? rope.sin.data_ptr<float>() : nullptr;
  at::parallel_for(0, B * H, 1, [&](int64_t bh0, int64_t bh1) {
    std::vector<float> scratch(static_cast<size_t>(attention_scratch_floats(S, D)));
    dispatch(
        qkv,
        [&] {
          attention_f32(ptr<float>(qkv), cos, sin, ptr<float>(out), scratch.data(), bh0, bh1, H, S, D, float(scale));
        },
        [&] {
          attention_bf16(ptr<bf16_bits>(qkv), cos, sin, ptr<bf16_bits>(out), scratch.data(), bh0, bh1, H, S, D,
                         float(scale));
        });
  });
  return out;
}

}  // namespace hrm::nn
