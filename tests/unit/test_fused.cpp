// Fused CPU kernels against the op-by-op composition they replace (hrm::nn::FusedKernels::Off).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <tuple>

#include "nn/fused_kernels.h"
#include "test_util.h"

using namespace hrm;
using nn::FusedKernels;

namespace {

// Runs body once on every instruction-set path this CPU runs (HRM_CPU_ISA's paths), restoring the active one.
template <class F>
void on_every_path(F&& body) {
  const nn::CpuIsa before = nn::cpu_isa();
  struct Restore {
    nn::CpuIsa isa;
    ~Restore() { nn::set_cpu_isa(isa); }
  } restore{before};
  for (const nn::CpuIsa isa : nn::supported_cpu_isas()) {
    SCOPED_TRACE(std::string("path ") + nn::cpu_isa_name(isa));
    nn::set_cpu_isa(isa);
    body(isa);
  }
}

template <class F>
torch::Tensor with_mode(FusedKernels mode, F&& f) {
  nn::ScopedFusedKernels m(mode);
  return f();
}

// op(inputs) with the fused kernels must match the same op in float64 on the same inputs (the truth): float32 to a
// few ulp (approximate exp, other summation order), bfloat16 to two roundings (intermediate + output, 2^-8 each).
// In bfloat16 it must also be, on average, at least as accurate as the op chain it replaces (LibTorch 1.13 rounds
// every intermediate of a bf16 chain; the fused kernels round only at the reference's op boundaries).
template <class Op>
void expect_matches_truth(Op&& op, const std::vector<torch::Tensor>& inputs) {
  std::vector<torch::Tensor> wide;
  for (const auto& t : inputs) wide.push_back(t.to(torch::kDouble));
  const torch::Tensor fused = with_mode(FusedKernels::All, [&] { return op(inputs); });
  const torch::Tensor chain = with_mode(FusedKernels::Off, [&] { return op(inputs); });
  const torch::Tensor truth = with_mode(FusedKernels::Off, [&] { return op(wide); });
  ASSERT_EQ(fused.scalar_type(), inputs[0].scalar_type());
  ASSERT_EQ(fused.sizes(), truth.sizes());
  const bool f32 = fused.scalar_type() == torch::kFloat;
  const double rtol = f32 ? 4e-6 : 1.0 / 128, atol = f32 ? 1e-6 : 1e-3;
  const torch::Tensor err = (fused.to(torch::kDouble) - truth).abs();
  const torch::Tensor chain_err = (chain.to(torch::kDouble) - truth).abs();
  // Elementwise bound, or twice the op chain's own largest error (sums over a sequence, as in attention, carry
  // more float32 rounding than a few ulp).
  const double chain_max = chain_err.max().item<double>();
  const torch::Tensor bad = err > torch::clamp_min(atol + rtol * truth.abs(), 2 * chain_max);
  EXPECT_EQ(bad.sum().item<int64_t>(), 0)
      << "max abs error " << err.max().item<double>() << " (op chain: " << chain_max << ")";
  if (!f32) {
    EXPECT_LE(err.mean().item<double>(), 1.1 * chain_err.mean().item<double>() + 1e-9);
  }
}

const torch::ScalarType kDtypes[] = {torch::kFloat, torch::kBFloat16};

// Restores the default route of bf16 products when a test that chose one ends.
struct ResetBf16Route {
  ~ResetBf16Route() { nn::reset_bf16_products_in_float32(); }
};

// bf16 products on hrm's dot-product kernels (fused kernels on) for a test's scope; the default route after it.
struct DotKernelRoute {
  ResetBf16Route reset;
  nn::ScopedFusedKernels fused{FusedKernels::Auto};
  DotKernelRoute() {
    nn::set_bf16_products_in_float32(false);
    nn::set_bf16_products_on_dot_kernels(true);
  }
};

}  // namespace

TEST(Fused, AddRmsNormMatchesComposition) {
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      for (int64_t n : {128, 82, 13}) {  // full vectors, a tail, less than one vector
        const torch::Tensor x = (torch::randn({3, 37, n}) * 2 + 0.5).to(dtype), y = torch::randn({3, 37, n}).to(dtype);
        // The truth adds in float64; the kernels (and the reference) round x + y to the dtype first.
        const torch::Tensor sum = (x + y).contiguous();
        expect_matches_truth(
            [](const auto& in) {
              if (in[0].scalar_type() != torch::kDouble) return nn::add_rms_norm(in[0], torch::Tensor(), 1e-5);
              return in[0] * torch::rsqrt(in[0].square().mean(-1, true) + 1e-5);  // rms_norm itself works in float
            },
            {sum});
        const torch::Tensor fused = with_mode(FusedKernels::All, [&] { return nn::add_rms_norm(x, y, 1e-5); });
        const torch::Tensor of_sum = with_mode(FusedKernels::All, [&] { return nn::add_rms_norm(sum, {}, 1e-5); });
        EXPECT_TRUE(torch::equal(fused, of_sum));
      }
    }
  });
}

TEST(Fused, SwigluMatchesCompositionIncludingLargeGates) {
  torch::NoGradGuard ng;
  torch::manual_seed(1);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      for (int64_t n : {512, 40, 7}) {
        torch::Tensor gate_up = torch::randn({5, 11, 2 * n}) * 3;
        gate_up.index_put_({0, 0, 0}, 100.0);   // silu(100) = 100
        gate_up.index_put_({0, 0, 1}, -100.0);  // silu(-100) ~ -4e-42
        expect_matches_truth([](const auto& in) { return nn::swiglu(in[0]); }, {gate_up.to(dtype)});
      }
    }
  });
}

// Every bf16 gate value (NaN, infinities and subnormals included) times ups of all magnitudes, in rows of 37 (two
// vectors and a scalar tail): looking silu (and its derivative) up in the tables gives the same bits as computing
// it, forward and backward.
TEST(Fused, SwigluTableIsBitIdenticalToComputing) {
  nn::ScopedFusedKernels m(FusedKernels::BFloat16);
  torch::manual_seed(7);
  const int64_t n = 37, rows = (65536 + n - 1) / n;
  torch::Tensor bits = torch::arange(rows * n, torch::kInt32).remainder(65536);
  bits = torch::where(bits >= 32768, bits - 65536, bits).to(torch::kInt16);  // the bf16 bit patterns, as int16
  const torch::Tensor gate = bits.view(torch::kBFloat16).view({rows, n});
  const torch::Tensor up =
      (torch::randn({rows, n}) * torch::pow(10.0, torch::randint(-6, 7, {rows, n}))).to(torch::kBFloat16);
  const torch::Tensor gate_up = torch::cat({gate, up}, 1);
  struct Restore {
    ~Restore() { nn::set_silu_table(true); }
  } restore;
  const torch::Tensor dy = torch::randn({rows, n}).to(torch::kBFloat16);
  // Forward and the gradient with respect to gate_up, both as bit patterns.
  const auto run = [&](bool table) {
    nn::set_silu_table(table);
    const torch::Tensor x = gate_up.detach().requires_grad_(true);
    const torch::Tensor out = nn::swiglu(x);
    const torch::Tensor grad = torch::autograd::grad({out}, {x}, {dy})[0];
    return std::make_pair(out.detach().view(torch::kInt16), grad.view(torch::kInt16));
  };
  bool any_table = false;
  on_every_path([&](nn::CpuIsa isa) {
    const bool has_table = nn::set_silu_table(true);
    EXPECT_EQ(has_table, isa == nn::CpuIsa::Avx512);
    if (!has_table) return;
    any_table = true;
    const auto [looked_up, looked_up_grad] = run(true);
    const auto [computed, computed_grad] = run(false);
    EXPECT_EQ((looked_up != computed).sum().item<int64_t>(), 0);
    EXPECT_EQ((looked_up_grad != computed_grad).sum().item<int64_t>(), 0);
    EXPECT_GT(torch::isnan(looked_up.view(torch::kBFloat16).to(torch::kFloat)).sum().item<int64_t>(), 0);  // NaN gates
  });
  if (!any_table) GTEST_SKIP() << "this CPU has no x86-64-v4: SwiGLU computes silu, there is no table to compare";
}

// The paths offered (GCC's __builtin_cpu_supports) are exactly those the CPU's flags as hrm reads them (its own
// CPUID reader, which the dtype rules use) allow; an unknown or unsupported path is an error that names it.
TEST(Fused, InstructionSetPathsFollowTheCpuAndAreChecked) {
  const std::vector<nn::CpuIsa> paths = nn::supported_cpu_isas();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.front(), nn::CpuIsa::Generic);
  if (std::getenv("HRM_CPU_ISA") == nullptr) EXPECT_EQ(nn::cpu_isa(), paths.back());
  const auto has = [&](nn::CpuIsa isa) { return std::find(paths.begin(), paths.end(), isa) != paths.end(); };
#if defined(__x86_64__)
  const std::string flags = " " + cpu_flags() + " ";
  const auto flag = [&](const char* f) { return flags.find(std::string(" ") + f + " ") != std::string::npos; };
  EXPECT_EQ(has(nn::CpuIsa::Avx2), flag("avx2") && flag("fma") && flag("bmi2") && flag("movbe")) << flags;
  EXPECT_EQ(has(nn::CpuIsa::Avx512),
            flag("avx512f") && flag("avx512bw") && flag("avx512dq") && flag("avx512vl") && flag("avx2"))
      << flags;
#else
  EXPECT_EQ(paths.size(), 1u);
#endif
  EXPECT_EQ(nn::parse_cpu_isa("avx2", "HRM_CPU_ISA"), nn::CpuIsa::Avx2);
  EXPECT_NE(test::error_of([] { nn::parse_cpu_isa("sse4", "HRM_CPU_ISA"); }).find("HRM_CPU_ISA: 'sse4' is not one of"),
            std::string::npos);
  for (const nn::CpuIsa isa : {nn::CpuIsa::Avx2, nn::CpuIsa::Avx512})
    if (!has(isa)) EXPECT_NE(test::error_of([&] { nn::set_cpu_isa(isa); }).find("lacks"), std::string::npos);
}

// The products' ceiling (hrm bench --kernels): float32 multiply-adds on every path; AVX512-BF16 dot products exactly
// where the dot-product kernels could run (the CPU has them and the path is avx512), else 0.
TEST(Fused, MultiplyAddCeilingIsMeasuredWhereThePathRunsIt) {
  on_every_path([&](nn::CpuIsa isa) {
    EXPECT_GT(nn::multiply_add_peak_gflops(false), 0.0) << nn::cpu_isa_name(isa);
    const double dot = nn::multiply_add_peak_gflops(true);
    if (nn::why_no_bf16_dot_kernels() == nullptr)
      EXPECT_GT(dot, 0.0) << nn::cpu_isa_name(isa);
    else
      EXPECT_EQ(dot, 0.0) << nn::cpu_isa_name(isa) << ": " << nn::why_no_bf16_dot_kernels();
  });
}

TEST(Fused, AttentionMatchesComposition) {
  torch::NoGradGuard ng;
  torch::manual_seed(2);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      for (auto [S, D] : {std::pair<int64_t, int64_t>{82, 16}, {16, 64}, {5, 8}, {19, 24}}) {  // tails in S and D
        nn::RotaryEmbedding rotary(D, S + 3, 10000.0);
        auto [cos, sin] = rotary.tables(torch::kCPU);
        const torch::Tensor qkv = (torch::randn({2, S, 3 * 3, D}) * 1.5).to(dtype);
        for (bool rope : {true, false}) {
          expect_matches_truth(
              [&](const auto& in) {
                nn::RopeTables tables;
                const bool wide = in[0].scalar_type() == torch::kDouble;
                if (rope)
                  tables =
                      wide ? nn::RopeTables{cos.to(torch::kDouble), sin.to(torch::kDouble)} : nn::RopeTables{cos, sin};
                return nn::attention(in[0], 3, tables);
              },
              {qkv});
        }
      }
    }
  });
}

TEST(Fused, NanPropagates) {
  torch::NoGradGuard ng;
  nn::ScopedFusedKernels m(FusedKernels::All);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      torch::Tensor x = torch::randn({2, 32});
      x.index_put_({0, 3}, NAN);
      x = x.to(dtype);
      const torch::Tensor norm = nn::add_rms_norm(x, torch::zeros_like(x), 1e-5);
      EXPECT_TRUE(torch::isnan(norm[0]).all().item<bool>());
      EXPECT_FALSE(torch::isnan(norm[1]).any().item<bool>());
      // In a key of batch 0, head 1, the NaN spreads to every query of that batch and head, and nowhere else.
      torch::Tensor qkv = torch::randn({2, 5, 3 * 2, 16});
      qkv.index_put_({0, 3, 2 + 1, 7}, NAN);
      qkv = qkv.to(dtype);
      const torch::Tensor attn = nn::attention(qkv, 2, {}).view({2, 5, 2, 16});
      EXPECT_TRUE(torch::isnan(attn.select(0, 0).select(1, 1)).all().item<bool>());
      EXPECT_EQ(torch::isnan(attn).sum().item<int64_t>(), 5 * 16);
      const torch::Tensor act = nn::swiglu(x);  // gate = x[:, :16]: NaN at (0, 3) only
      EXPECT_EQ(torch::isnan(act).sum().item<int64_t>(), 1);
    }
  });
}

TEST(Fused, BackwardOfNormAndSwigluMatchesTruth) {
  // The custom autograd functions' gradients against autograd through the composition in float64 (rms_norm itself
  // computes in float32, so the norm's truth is float32-accurate: far below the tolerances).
  torch::manual_seed(4);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      const torch::Tensor x = torch::randn({3, 11, 40}).to(dtype), y = torch::randn({3, 11, 40}).to(dtype);
      const torch::Tensor gate_up = (torch::randn({3, 11, 80}) * 2).to(dtype);
      const torch::Tensor w_norm = torch::randn({3, 11, 40}), w_act = torch::randn({3, 11, 40});
      // Gradients of sum(w * f(inputs)) with respect to the inputs, concatenated.
      const auto grads = [&](FusedKernels mode, torch::ScalarType as) {
        nn::ScopedFusedKernels m(mode);
        const auto leaf = [&](const torch::Tensor& t) { return t.to(as).detach().requires_grad_(); };
        const torch::Tensor xs = leaf(x), ys = leaf(y), gu = leaf(gate_up);
        const torch::Tensor loss = (nn::add_rms_norm(xs, ys, 1e-5).to(torch::kDouble) * w_norm).sum() +
                                   (nn::swiglu(gu).to(torch::kDouble) * w_act).sum();
        loss.backward();
        return torch::cat({xs.grad().flatten(), ys.grad().flatten(), gu.grad().flatten()});
      };
      const torch::Tensor fused = grads(FusedKernels::All, dtype);
      const torch::Tensor chain = grads(FusedKernels::Off, dtype);
      const torch::Tensor truth = grads(FusedKernels::Off, torch::kDouble);
      ASSERT_EQ(fused.scalar_type(), dtype);
      const bool f32 = dtype == torch::kFloat;
      const torch::Tensor err = (fused.to(torch::kDouble) - truth).abs();
      const torch::Tensor chain_err = (chain.to(torch::kDouble) - truth).abs();
      const double tol = f32 ? 1e-5 : 1.0 / 64;  // relative to the largest gradient
      const double scale = truth.abs().max().item<double>();
      EXPECT_LT(err.max().item<double>(), tol * scale) << "chain: " << chain_err.max().item<double>();
      if (!f32) EXPECT_LE(err.mean().item<double>(), 1.1 * chain_err.mean().item<double>());
    }
  });
}

// d/d qkv of sum(attention(qkv) * w) with qkv as `as` (w and the sum in float64), with RoPE or without.
torch::Tensor attention_grad(const torch::Tensor& qkv, int64_t heads, bool rope, const torch::Tensor& w,
                             FusedKernels mode, torch::ScalarType as) {
  nn::ScopedFusedKernels m(mode);
  const torch::Tensor x = qkv.to(as).detach().requires_grad_();
  nn::RopeTables tables;
  if (rope) {
    nn::RotaryEmbedding rotary(qkv.size(3), qkv.size(1), 10000.0);
    auto [cos, sin] = rotary.tables(torch::kCPU);
    const auto wide = as == torch::kDouble ? torch::kDouble : torch::kFloat;
    tables = {cos.to(wide), sin.to(wide)};
  }
  (nn::attention(x, heads, tables).to(torch::kDouble) * w).sum().backward();
  return x.grad();
}

// The fused kernels' gradient against float64: within 1e-5 of the largest in float32; in bf16 within 1/32 of it,
// and on average no further off than LibTorch's own bf16 ops (1.1x).
void expect_attention_grad_matches_truth(const torch::Tensor& qkv, int64_t heads, bool rope) {
  const torch::Tensor w = torch::randn({qkv.size(0), qkv.size(1), heads * qkv.size(3)}, torch::kDouble);
  const torch::ScalarType dtype = qkv.scalar_type();
  const torch::Tensor fused = attention_grad(qkv, heads, rope, w, FusedKernels::All, dtype);
  const torch::Tensor chain = attention_grad(qkv, heads, rope, w, FusedKernels::Off, dtype);
  const torch::Tensor truth = attention_grad(qkv, heads, rope, w, FusedKernels::Off, torch::kDouble);
  ASSERT_EQ(fused.scalar_type(), dtype);
  const torch::Tensor err = (fused.to(torch::kDouble) - truth).abs();
  const torch::Tensor chain_err = (chain.to(torch::kDouble) - truth).abs();
  const double scale = truth.abs().max().item<double>();
  const bool f32 = dtype == torch::kFloat;
  EXPECT_LT(err.max().item<double>(), (f32 ? 1e-5 : 1.0 / 32) * scale)
      << "chain max error " << chain_err.max().item<double>();
  if (!f32) EXPECT_LE(err.mean().item<double>(), 1.1 * chain_err.mean().item<double>());
}

TEST(Fused, AttentionBackwardMatchesTruth) {
  torch::manual_seed(6);
  on_every_path([&](nn::CpuIsa) {
    for (auto dtype : kDtypes) {
      // (300 and 229 tokens: several blocks of query rows, the last one partly past S)
      for (auto [S, D] : {std::pair<int64_t, int64_t>{82, 16}, {19, 24}, {5, 8}, {300, 16}, {229, 8}}) {
        const torch::Tensor qkv = (torch::randn({2, S, 3 * 3, D}) * 1.5).to(dtype);
        for (bool rope : {true, false}) {
          SCOPED_TRACE("S " + std::to_string(S) + ", D " + std::to_string(D) + (rope ? ", rope" : ""));
          expect_attention_grad_matches_truth(qkv, 3, rope);
        }
      }
    }
  });
}

// Names of the RECORD_FUNCTION events this thread records while an instance lives (instances may nest: each sees
// every event of its lifetime; one observer serves them all).
struct RecordedNames {
  std::vector<std::string> names;
  RecordedNames() {
    if (live().empty())
      handle() = at::addThreadLocalCallback(
          at::RecordFunctionCallback([](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
            for (RecordedNames* r : live()) r->names.emplace_back(fn.name());
            return nullptr;
          }));
    live().push_back(this);
  }
  ~RecordedNames() {
    live().erase(std::find(live().begin(), live().end(), this));
    if (live().empty()) at::removeCallback(handle());
  }
  RecordedNames(const RecordedNames&) = delete;
  RecordedNames& operator=(const RecordedNames&) = delete;
  int64_t count(const std::string& name) const { return std::count(names.begin(), names.end(), name); }

 private:
  static std::vector<RecordedNames*>& live() {
    static thread_local std::vector<RecordedNames*> instances;
    return instances;
  }
  static at::CallbackHandle& handle() {
    static thread_local at::CallbackHandle h = 0;
    return h;
  }
};

TEST(Fused, Bf16AttentionOnDotProductsMatchesTruth) {
  // bf16 attention runs on AVX512-BF16 dot products where bf16 products do (every product's inputs rounded to bf16
  // -- q, k, P, dS -- as FlashAttention): forward and gradient against float64 within the bound of LibTorch's bf16
  // ops, with and without RoPE, every head width it takes, short and long sequences (one block of query rows in the
  // backward, several); other head widths stay on the float kernel.
  if (const char* why = nn::why_no_bf16_dot_kernels()) GTEST_SKIP() << why;
  ResetBf16Route reset;
  nn::set_bf16_products_in_float32(false);
  nn::set_bf16_products_on_dot_kernels(true);
  torch::NoGradGuard ng;
  torch::manual_seed(12);
  const auto attention = [](const torch::Tensor& qkv, int64_t D, bool rope) {
    nn::RotaryEmbedding rotary(D, qkv.size(1), 10000.0);
    auto [cos, sin] = rotary.tables(torch::kCPU);
    nn::RopeTables tables;
    if (rope) {
      const bool wide = qkv.scalar_type() == torch::kDouble;
      tables = wide ? nn::RopeTables{cos.to(torch::kDouble), sin.to(torch::kDouble)} : nn::RopeTables{cos, sin};
    }
    return nn::attention(qkv, 2, tables);
  };
  // (small scores with large values too: there a padding key leaking into a softmax would add ~1/S to its sum)
  for (auto [S, D, scale] : {std::tuple<int64_t, int64_t, double>{82, 16, 1.5},
                             {5, 64, 1.5},
                             {1, 16, 1.5},
                             {19, 32, 1.5},
                             {256, 16, 1.5},
                             {301, 64, 1.5},
                             {300, 32, 1.5},
                             {257, 48, 1.5},
                             {901, 16, 1.5},
                             {257, 16, 0.1}}) {
    torch::Tensor qkv = torch::randn({2, S, 3 * 2, D}) * scale;
    qkv.narrow(2, 4, 2).mul_(1.5 / scale);  // v
    qkv = qkv.to(torch::kBFloat16);
    for (bool rope : {true, false}) {
      SCOPED_TRACE("S " + std::to_string(S) + ", D " + std::to_string(D) + (rope ? ", rope" : ""));
      RecordedNames seen;
      expect_matches_truth([&](const auto& in) { return attention(in[0], D, rope); }, {qkv});
      EXPECT_EQ(seen.count("hrm::attention_bf16_dot"), 1);
      torch::AutoGradMode grad_on(true);
      expect_attention_grad_matches_truth(qkv, 2, rope);
      EXPECT_EQ(seen.count("hrm::attention_bf16_dot_backward"), 1);
    }
  }
  RecordedNames seen;
  with_mode(FusedKernels::All, [&] {
    return attention((torch::randn({1, 255, 6, 24})).to(torch::kBFloat16), 24, true);
  });
  EXPECT_EQ(seen.count("hrm::attention_bf16_dot"), 0);
  EXPECT_EQ(seen.count("hrm::attention"), 1);
}

#if HRM_KERNEL_ISAS_X86
TEST(Fused, ExpOfTheBf16AttentionProbabilitiesIsAccurate) {
  // The dot-product attention's exp (degree-5 polynomial, vscalefps) against exp in double over [-100, 0]: relative
  // error <= 4.6e-7 down to -87 (below the bf16 rounding of the probabilities by 2^12), 0 below -100, NaN kept.
  const auto isas = nn::supported_cpu_isas();
  if (std::find(isas.begin(), isas.end(), nn::CpuIsa::Avx512) == isas.end()) GTEST_SKIP() << "no AVX-512 path here";
  std::vector<float> x;
  for (int64_t i = 0; i <= 1000000; ++i) x.push_back(static_cast<float>(-87.0 * i / 1000000));
  for (float v : {-0.0f, -1e-30f, -0.34657359f, -0.34657362f, -87.3f, -99.9f, -100.0f, -1000.0f, -INFINITY, NAN})
    x.push_back(v);
  std::vector<float> e(x.size());
  nn::kernels::avx512::exp_nonpositive(x.data(), e.data(), static_cast<int64_t>(x.size()));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(e[i]));
    } else if (x[i] >= -87.0f) {
      const double truth = std::exp(static_cast<double>(x[i]));
      worst = std::max(worst, std::abs(e[i] - truth) / truth);
    } else {
      EXPECT_LE(e[i], 1e-37f) << x[i];
      EXPECT_GE(e[i], 0.0f) << x[i];
    }
  }
  EXPECT_LE(worst, 4.6e-7);
}
#endif

using Elementwise = void (*)(const float*, float*, int64_t);

// An elementwise entry point of each instruction-set namespace applied to x, on every path this CPU runs: the path's
// name and its outputs.
std::vector<std::pair<std::string, std::vector<float>>> outputs_on_every_path(const std::vector<float>& x,
                                                                              Elementwise generic, Elementwise avx2,
                                                                              Elementwise avx512) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  on_every_path([&](nn::CpuIsa isa) {
    const Elementwise f = isa == nn::CpuIsa::Avx512 ? avx512 : isa == nn::CpuIsa::Avx2 ? avx2 : generic;
    std::vector<float> y(x.size());
    f(x.data(), y.data(), static_cast<int64_t>(x.size()));
    out.emplace_back(nn::cpu_isa_name(isa), std::move(y));
  });
  return out;
}
#if HRM_KERNEL_ISAS_X86
#define HRM_ON_EVERY_PATH(x, fn) \
  outputs_on_every_path(x, nn::kernels::generic::fn, nn::kernels::avx2::fn, nn::kernels::avx512::fn)
#else
#define HRM_ON_EVERY_PATH(x, fn) outputs_on_every_path(x, nn::kernels::generic::fn, nullptr, nullptr)
#endif

// max over i < n of |y[i] - truth(x[i])| / truth(x[i]), in double.
double worst_relative_error(const std::vector<float>& x, const std::vector<float>& y, size_t n,
                            double (*truth)(double)) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = truth(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs(y[i] - t) / t);
  }
  return worst;
}

// Outputs y[i] of an exp past the checked range (i >= from): NaN for NaN, in [0, tiny] below it, top (to 2.4e-7)
// above it.
void expect_clamped(const std::string& name, const std::vector<float>& x, const std::vector<float>& y, size_t from,
                    float tiny, float top) {
  for (size_t i = from; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(y[i])) << name;
    } else if (x[i] < 0) {
      EXPECT_GE(y[i], 0.0f) << name << " " << x[i];
      EXPECT_LE(y[i], tiny) << name << " " << x[i];
    } else {
      EXPECT_NEAR(y[i], top, top * 2.4e-7) << name << " " << x[i];
    }
  }
}

TEST(Fused, ExpOfTheFloatKernelsIsAccurateOnEveryPath) {
  // simd::exp (silu on the avx2 and generic paths) against exp in double: relative error within 1 ulp (2^-23) over
  // [-87.3, 88], clamped outside (2^n goes into the exponent bits, so it must stay normal): tiny and >= 0 below, e^88
  // above, NaN kept.
  std::vector<float> x;
  for (int64_t i = 0; i <= 1000000; ++i) x.push_back(static_cast<float>(-87.3 + 175.3 * i / 1000000));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 0.34657359f, -0.34657362f, 88.0f, -87.3f, -87.29f}) x.push_back(v);
  const size_t n_checked = x.size();
  for (float v : {-87.31f, -88.0f, -99.9f, -1000.0f, -INFINITY, 88.01f, 100.0f, INFINITY, NAN}) x.push_back(v);
  const float e88 = std::exp(88.0f);
  for (const auto& [name, e] : HRM_ON_EVERY_PATH(x, vector_exp)) {
    const double worst = worst_relative_error(x, e, n_checked, [](double v) { return std::exp(v); });
    std::printf("%s: worst relative error %.3g\n", name.c_str(), worst);
    EXPECT_LE(worst, std::ldexp(1.0, -23)) << name;
    expect_clamped(name, x, e, n_checked, 1.3e-38f, e88);
  }
}

TEST(Fused, Exp2OfTheFloatAttentionIsAccurateOnEveryPath) {
  // The float attention's softmax takes 2^x of base-2 scores minus their row's maximum (simd::exp2_nonpositive):
  // against exp2 in double, relative error within 1 ulp (2^-23) over [-126, 0]; below, clamped (tiny, >= 0); NaN
  // kept.
  std::vector<float> x;
  for (int64_t i = 0; i <= 1000000; ++i) x.push_back(static_cast<float>(-126.0 * i / 1000000));
  for (float v : {-0.0f, -1e-30f, -0.5f, -0.49999997f, -0.50000006f, -125.5f, -126.0f}) x.push_back(v);
  const size_t n_checked = x.size();
  for (float v : {-126.01f, -149.0f, -1000.0f, -INFINITY, NAN}) x.push_back(v);
  for (const auto& [name, e] : HRM_ON_EVERY_PATH(x, vector_exp2_nonpositive)) {
    const double worst = worst_relative_error(x, e, n_checked, [](double v) { return std::exp2(v); });
    std::printf("%s: worst relative error %.3g\n", name.c_str(), worst);
    EXPECT_LE(worst, std::ldexp(1.0, -23)) << name;
    expect_clamped(name, x, e, n_checked, std::ldexp(1.0f, -126), 0.0f);
  }
}

// Logits of a tiny bf16 HRM forward (eval, no graph), the same model and batch at each call: `route` sets the route
// of bf16 products first, `check` (if given) sees the events the forward recorded.
torch::Tensor tiny_bf16_logits(const std::function<void()>& route,
                               const std::function<void(const RecordedNames&)>& check = {}) {
  ModelConfig c = test::tiny_config();
  c.forward_dtype = "bfloat16";
  torch::manual_seed(5);
  ACTModel model = make_model(c);
  model->eval();
  const Batch batch = test::random_batch(c, 4);
  torch::NoGradGuard ng;
  route();
  RecordedNames seen;
  torch::Tensor out = model->forward(model->initial_carry(batch), batch).second.logits.to(torch::kFloat);
  if (check) check(seen);
  return out;
}

TEST(Fused, LinearMatchesTruthForwardAndBackward) {
  // hrm::nn::linear's float32 path (oneDNN's sgemm where the build has it) against torch::linear in float64:
  // outputs and the gradients of x, w and b, with and without bias, for 3-D inputs, only w needing a gradient,
  // and no rows at all. 512 outputs: on oneDNN's AVX2 kernels w's gradient reads a copy of y's gradient with padded
  // rows, in blocks of 4096 tokens (ctest runs this test once more with oneDNN capped at AVX2).
  torch::manual_seed(5);
  struct Case {
    std::vector<int64_t> x_shape;
    int64_t out;
    bool bias, x_grad;
  };
  const Case cases[] = {{{3, 37, 300}, 130, false, true}, {{2, 5, 64}, 1, true, true},
                        {{50, 96}, 40, true, false},      {{0, 8}, 4, true, true},
                        {{2, 41, 128}, 512, false, true}, {{2, 2100, 64}, 512, true, true}};
  for (const Case& c : cases) {
    SCOPED_TRACE("x " + std::to_string(c.x_shape.front()) + "x..x" + std::to_string(c.x_shape.back()) + " -> " +
                 std::to_string(c.out));
    const int64_t in = c.x_shape.back();
    const torch::Tensor x = torch::randn(c.x_shape), w = torch::randn({c.out, in}) / std::sqrt(double(in));
    const torch::Tensor b = c.bias ? torch::randn({c.out}) : torch::Tensor();
    std::vector<int64_t> y_shape = c.x_shape;
    y_shape.back() = c.out;
    const torch::Tensor w_out = torch::randn(y_shape);
    // y and the gradients of sum(w_out * y), concatenated.
    const auto run = [&](FusedKernels mode, torch::ScalarType as) {
      nn::ScopedFusedKernels m(mode);
      const torch::Tensor xs = x.to(as).detach().requires_grad_(c.x_grad), ws = w.to(as).detach().requires_grad_();
      const torch::Tensor bs = c.bias ? b.to(as).detach().requires_grad_() : torch::Tensor();
      const torch::Tensor y = nn::linear(xs, ws, bs);
      (y.to(torch::kDouble) * w_out).sum().backward();
      std::vector<torch::Tensor> parts{y.flatten(), ws.grad().flatten()};
      if (c.x_grad) parts.push_back(xs.grad().flatten());
      if (c.bias) parts.push_back(bs.grad().flatten());
      for (auto& p : parts) p = p.to(torch::kDouble);
      return torch::cat(parts);
    };
    RecordedNames seen;
    const torch::Tensor fused = run(FusedKernels::All, torch::kFloat);
    const torch::Tensor truth = run(FusedKernels::Off, torch::kDouble);
    ASSERT_EQ(fused.sizes(), truth.sizes());
#ifdef HRM_TEST_EXPECTS_DNNL  // the oneDNN kernel ran (once, forward), except for the empty product
    EXPECT_EQ(seen.count("hrm::linear"), x.numel() > 0 ? 1 : 0);
    EXPECT_EQ(seen.count("hrm::sgemm_pad_rows"), c.out == 512 && std::string(nn::onednn_kernels()) == "avx2" ? 1 : 0);
#endif
    const double scale = truth.abs().max().item<double>();
    EXPECT_LE((fused - truth).abs().max().item<double>(), 2e-6 * scale);  // no rows: every gradient is 0
  }
  {  // the products take oneDNN exactly when the fused float32 path is on and the build has it
    nn::ScopedFusedKernels all(FusedKernels::All);
#ifdef HRM_TEST_EXPECTS_DNNL
    EXPECT_TRUE(nn::linear_uses_onednn());
#endif
    nn::ScopedFusedKernels off(FusedKernels::BFloat16);
    EXPECT_FALSE(nn::linear_uses_onednn());
  }
}

TEST(Fused, LinearOnATransposedViewIsOneProductPerBatch) {
  // The op-by-op float32 path multiplies a [B, M, K] view with transposed last dims (mlp_t's token mixing) batch by
  // batch, as LibTorch 1.13 does and the fixtures need, also where LibTorch >= 2.0 would copy it into [B*M, K]
  // first because w requires grad (scripts/check-libtorch2.sh runs this test on 2.6).
  torch::manual_seed(8);
  nn::ScopedFusedKernels off(FusedKernels::Off);
  const torch::Tensor x = torch::randn({5, 18, 32}).transpose(1, 2);  // [5, 32, 18], strides [576, 1, 32]
  const torch::Tensor w = (torch::randn({40, 18}) / 4).requires_grad_(), b = torch::randn({40});
  const torch::Tensor y = nn::linear(x, w), yb = nn::linear(x, w, b);
  for (int64_t i = 0; i < x.size(0); ++i) {
    const torch::Tensor per_batch = torch::mm(x[i], w.t());
    EXPECT_TRUE(torch::equal(y[i], per_batch)) << "batch " << i;
    EXPECT_TRUE(torch::equal(yb[i], per_batch + b)) << "batch " << i;
  }
  y.sum().backward();
  EXPECT_TRUE(
      torch::allclose(w.grad(), torch::ones({5, 32, 40}).flatten(0, 1).t().mm(x.reshape({160, 18})), 1e-5, 1e-5));
}

TEST(Fused, DefaultModeFusesFloat32ExceptForTheReference) {
  // Default: bf16 and float32 fused on the avx512 and avx2 paths, off on the generic one. The reference mode (what
  // verify-reference holds) leaves float32 bit-identical to the composition and bf16 fused.
  torch::NoGradGuard ng;
  ASSERT_EQ(nn::fused_kernels(), FusedKernels::Auto) << "run without HRM_FUSED_KERNELS set";
  const torch::Tensor gate_up = torch::randn({8, 64});
  const auto parts = gate_up.chunk(2, -1);
  const torch::Tensor composition = torch::silu(parts[0]) * parts[1];
  on_every_path([&](nn::CpuIsa isa) {
    const bool generic = isa == nn::CpuIsa::Generic;
    EXPECT_EQ(nn::effective_fused_kernels(), generic ? FusedKernels::Off : FusedKernels::All);
    EXPECT_EQ(nn::fused_kernels_cover(torch::kFloat), !generic);
    EXPECT_EQ(nn::fused_kernels_cover(torch::kBFloat16), !generic);
    {
      const nn::ScopedFusedKernels reference(nn::reference_fused_kernels());
      EXPECT_FALSE(nn::fused_kernels_cover(torch::kFloat));
      EXPECT_EQ(nn::fused_kernels_cover(torch::kBFloat16), !generic);
      EXPECT_TRUE(torch::equal(nn::swiglu(gate_up), composition));
    }
    EXPECT_EQ(nn::fused_kernels(), FusedKernels::Auto);
    EXPECT_TRUE(torch::allclose(nn::swiglu(gate_up), composition, 1e-6, 1e-6));
  });
  nn::ScopedFusedKernels all(FusedKernels::All);  // an explicit mode is what the user asked for, also for the reference
  const nn::ScopedFusedKernels reference(nn::reference_fused_kernels());
  EXPECT_EQ(nn::fused_kernels(), FusedKernels::All);
}

TEST(Fused, HrmTrainingGradientsMatchUnfusedInFloat32) {
  // float32 training takes the fused kernels by default: one ACT training segment (no-grad cycles, the one-step
  // gradient through the custom autograd functions, the target-Q forward) gives every parameter the gradient of
  // the op-by-op model, to float32 rounding grown through 2x2 cycles.
  ModelConfig c = test::tiny_config();
  c.hidden_size = 64;
  c.num_heads = 4;
  torch::manual_seed(6);
  ACTModel model = make_model(c);
  model->train();
  const Batch b = test::random_batch(c, 4, 3);
  const auto gradients = [&](FusedKernels mode) {
    nn::ScopedFusedKernels m(mode);
    EXPECT_EQ(nn::fused_kernels_cover(torch::kFloat), mode == FusedKernels::All);
    model->zero_grad();
    torch::manual_seed(7);
    const Carry carry = model->initial_carry(b);
    auto [next, out] = model->forward(carry, b);
    act_loss(next, out, LossType::StablemaxCrossEntropy).loss.backward();
    std::vector<std::pair<std::string, torch::Tensor>> g;
    for (const auto& p : model->named_parameters())
      if (p.value().grad().defined()) g.emplace_back(p.key(), p.value().grad().clone());
    return g;
  };
  on_every_path([&](nn::CpuIsa isa) {
    const auto fused = gradients(FusedKernels::All), reference = gradients(FusedKernels::Off);
    ASSERT_EQ(fused.size(), reference.size());
    ASSERT_GT(fused.size(), 8u);
    for (size_t i = 0; i < fused.size(); ++i) {
      const double scale = reference[i].second.abs().max().item<double>();
      const double err = (fused[i].second - reference[i].second).abs().max().item<double>();
      EXPECT_LE(err, 1e-4 * scale + 1e-9) << fused[i].first << " on " << nn::cpu_isa_name(isa);
    }
  });
}

TEST(Fused, HrmForwardMatchesUnfusedInBfloat16) {
  ModelConfig c = test::tiny_config();
  c.forward_dtype = "bfloat16";
  c.hidden_size = 64;
  c.num_heads = 4;
  torch::manual_seed(5);
  ACTModel model = make_model(c);
  model->eval();
  const Batch b = test::random_batch(c, 4);
  torch::NoGradGuard ng;
  auto run = [&] { return model->forward(model->initial_carry(b), b).second.logits.to(torch::kFloat); };
  on_every_path([&](nn::CpuIsa) {
    torch::Tensor fused, reference;
    {
      nn::ScopedFusedKernels m(FusedKernels::BFloat16);
      fused = run();
    }
    {
      nn::ScopedFusedKernels m(FusedKernels::Off);
      reference = run();
    }
    // 2x2 cycles of bf16 blocks: rounding differences grow through the recurrence; bound them at 5% of the scale.
    const double scale = reference.abs().max().item<double>();
    EXPECT_LT((fused - reference).abs().max().item<double>(), 0.05 * scale);
    EXPECT_GT(scale, 0);
  });
}

// Where LibTorch has no fast bf16 products (CPUs without AVX-512: its own loops at ~2 GFLOP/s), nn::linear and
// nn::matmul run them as float32 products of the bf16 operands, rounded to bf16: the product LibTorch's bf16 kernels
// compute (float sums, one rounding), forward and backward, as accurate on average as LibTorch's own here.
TEST(Fused, Bf16ProductsInFloat32AreTheBf16Product) {
  ResetBf16Route reset;
  torch::manual_seed(9);
  const auto bf16_exact = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kDouble); };
  const torch::Tensor x = bf16_exact(torch::randn({3, 37, 300})), w = bf16_exact(torch::randn({130, 300}) / 17);
  const torch::Tensor b = bf16_exact(torch::randn({130})), w_out = bf16_exact(torch::randn({3, 37, 130}));
  // y and the gradients of sum(w_out * y) (w_out exact in bf16, so the incoming gradient is not rounded).
  const auto run = [&](torch::ScalarType as) {
    const auto leaf = [&](const torch::Tensor& t) { return t.to(as).detach().clone().requires_grad_(); };
    const torch::Tensor xs = leaf(x), ws = leaf(w), bs = leaf(b);
    const torch::Tensor y = nn::linear(xs, ws, bs);
    EXPECT_EQ(y.scalar_type(), as);
    (y.to(torch::kDouble) * w_out).sum().backward();
    std::vector<torch::Tensor> parts{y.flatten(), xs.grad().flatten(), ws.grad().flatten(), bs.grad().flatten()};
    for (auto& p : parts) p = p.to(torch::kDouble);
    return torch::cat(parts);
  };
  const torch::Tensor truth = run(torch::kDouble);
  RecordedNames seen;
  nn::ScopedFusedKernels fused_float32(FusedKernels::All);  // the float32 products then run hrm::linear's kernel
  nn::set_bf16_products_in_float32(true);
  EXPECT_EQ(std::string(nn::bf16_product_kernels()), "float32 kernels, rounded to bfloat16");
  const torch::Tensor in_float32 = run(torch::kBFloat16);
#ifdef HRM_TEST_EXPECTS_DNNL
  EXPECT_EQ(seen.count("hrm::linear"), 1);
#endif
  nn::set_bf16_products_in_float32(false);
  EXPECT_NE(std::string(nn::bf16_product_kernels()), "float32 kernels, rounded to bfloat16");
  const torch::Tensor libtorch = run(torch::kBFloat16);
  EXPECT_EQ(seen.count("hrm::linear"), 1);  // LibTorch's own bf16 product
  // One rounding to bf16 (half an ulp: 2^-8 relative) after float sums of at most 111 terms.
  const double scale = truth.abs().max().item<double>();
  const torch::Tensor err = (in_float32 - truth).abs();
  EXPECT_EQ((err > truth.abs() * std::ldexp(1.0, -8) + 1e-5 * scale).sum().item<int64_t>(), 0)
      << "max abs error " << err.max().item<double>();
  EXPECT_LE(err.mean().item<double>(), 1.1 * (libtorch - truth).abs().mean().item<double>() + 1e-9);

  // nn::matmul (the attention's products on LibTorch's ops), batched as attention calls it.
  const torch::Tensor q = bf16_exact(torch::randn({2, 4, 37, 16})), k = bf16_exact(torch::randn({2, 4, 16, 37}));
  const torch::Tensor scores_truth = torch::matmul(q, k);
  nn::set_bf16_products_in_float32(true);
  const torch::Tensor scores = nn::matmul(q.to(torch::kBFloat16), k.to(torch::kBFloat16));
  EXPECT_EQ(scores.scalar_type(), torch::kBFloat16);
  const torch::Tensor scores_err = (scores.to(torch::kDouble) - scores_truth).abs();
  EXPECT_EQ((scores_err > scores_truth.abs() * std::ldexp(1.0, -8) + 1e-6).sum().item<int64_t>(), 0);

  // A whole bf16 HRM forward either way: the same model up to bf16 rounding through the recurrence.
  const auto logits = [](bool in_float) {
    return tiny_bf16_logits([in_float] { nn::set_bf16_products_in_float32(in_float); });
  };
  const torch::Tensor a = logits(true), reference = logits(false);
  EXPECT_LT((a - reference).abs().max().item<double>(), 0.05 * reference.abs().max().item<double>());
}

// hrm's AVX512-BF16 dot-product kernels: the bf16 product (bf16 operands, float sums, one rounding), forward and the
// input's gradient, at shapes with partial row tiles (111 rows) and partial column blocks (16, 48, 80, 144 columns).
TEST(Fused, Bf16DotKernelsAreTheBf16Product) {
  if (const char* why = nn::why_no_bf16_dot_kernels()) GTEST_SKIP() << why;
  DotKernelRoute route;
  ASSERT_TRUE(nn::bf16_products_on_dot_kernels());
  torch::manual_seed(11);
  const auto bf16_exact = [](const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kDouble); };
  for (const int64_t K : {2, 130, 160, 512})
    for (const int64_t N : {16, 48, 80, 144}) {
      const torch::Tensor x = bf16_exact(torch::randn({3, 37, K})), w = bf16_exact(torch::randn({N, K}) / 11);
      const torch::Tensor w_out = bf16_exact(torch::randn({3, 37, N}));
      const auto run = [&](torch::ScalarType as) {
        const torch::Tensor xs = x.to(as).detach().requires_grad_(), ws = w.to(as).detach().requires_grad_();
        const torch::Tensor y = nn::linear(xs, ws);
        (y.to(torch::kDouble) * w_out).sum().backward();
        return std::vector<torch::Tensor>{y.to(torch::kDouble), xs.grad().to(torch::kDouble),
                                          ws.grad().to(torch::kDouble)};
      };
      const std::vector<torch::Tensor> truth = run(torch::kDouble);
      nn::set_bf16_products_on_dot_kernels(false);
      const std::vector<torch::Tensor> libtorch = run(torch::kBFloat16);
      nn::set_bf16_products_on_dot_kernels(true);
      RecordedNames seen;
      const std::vector<torch::Tensor> got = run(torch::kBFloat16);
      EXPECT_EQ(seen.count("hrm::linear_bf16"), 1) << K << "x" << N;
      const bool dx_on_dot = K % 16 == 0;
      EXPECT_EQ(seen.count("hrm::linear_bf16_backward"), dx_on_dot ? 1 : 0) << K << "x" << N;
      // What the kernels do not compute is LibTorch's own product, as in its linear's backward: dw, and dx where K
      // is not a multiple of 16 (LibTorch's small bf16 products run in its own loops, less accurate than one rounding).
      EXPECT_TRUE(torch::equal(got[2], libtorch[2])) << K << "x" << N;
      if (!dx_on_dot) EXPECT_TRUE(torch::equal(got[1], libtorch[1])) << K << "x" << N;
      for (size_t i = 0; i < (dx_on_dot ? 2u : 1u); ++i) {
        // One rounding to bf16 (half an ulp: 2^-8 relative) after float sums.
        const double scale = truth[i].abs().max().item<double>();
        const torch::Tensor err = (got[i] - truth[i]).abs();
        EXPECT_EQ((err > truth[i].abs() * std::ldexp(1.0, -8) + 1e-5 * scale).sum().item<int64_t>(), 0)
            << "K " << K << " N " << N << " output " << i << ": max abs error " << err.max().item<double>();
      }
    }
  // Off with the fused kernels, and where the shape does not fit (N not a multiple of 16): LibTorch's product.
  const torch::Tensor x = torch::randn({5, 64}).to(torch::kBFloat16);
  {
    RecordedNames seen;
    nn::linear(x, torch::randn({24, 64}).to(torch::kBFloat16));
    nn::ScopedFusedKernels off(FusedKernels::Off);
    EXPECT_FALSE(nn::bf16_products_on_dot_kernels());
    nn::linear(x, torch::randn({32, 64}).to(torch::kBFloat16));
    EXPECT_EQ(seen.count("hrm::linear_bf16"), 0);
  }
}

// swiglu(linear(x, w)) in one pass (no graph, dot kernels, the SwiGLU table) is bit-identical to the two ops.
TEST(Fused, LinearSwigluInOnePassIsTheTwoOps) {
  if (const char* why = nn::why_no_bf16_dot_kernels()) GTEST_SKIP() << why;
  DotKernelRoute route;
  ASSERT_TRUE(nn::set_silu_table(true));
  torch::manual_seed(12);
  for (const int64_t K : {64, 130, 512}) {
    const torch::Tensor x = torch::randn({2, 41, K}).to(torch::kBFloat16);
    const torch::Tensor w = (torch::randn({192, K}) * 3 / std::sqrt(double(K))).to(torch::kBFloat16);
    torch::NoGradGuard ng;
    RecordedNames seen;
    const torch::Tensor one_pass = nn::linear_swiglu(x, w);
    EXPECT_EQ(seen.count("hrm::linear_swiglu_bf16"), 1);
    const torch::Tensor two_ops = nn::swiglu(nn::linear(x, w));
    EXPECT_EQ(seen.count("hrm::linear_swiglu_bf16"), 1);
    EXPECT_EQ(one_pass.sizes(), two_ops.sizes());
    EXPECT_TRUE(torch::equal(one_pass, two_ops))
        << "K " << K << ": max difference "
        << (one_pass.to(torch::kFloat) - two_ops.to(torch::kFloat)).abs().max().item<float>();
  }
  // With a graph to build, the one pass also writes the product for SwiGLU's backward: the output and both
  // gradients are the two ops', bit for bit.
  for (const int64_t K : {64, 130}) {
    const torch::Tensor x0 = torch::randn({3, 37, K}).to(torch::kBFloat16);
    const torch::Tensor w0 = (torch::randn({192, K}) * 3 / std::sqrt(double(K))).to(torch::kBFloat16);
    const torch::Tensor dy = torch::randn({3, 37, 96}).to(torch::kBFloat16);
    const auto run = [&](bool one_pass) {
      const torch::Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_();
      RecordedNames seen;
      const torch::Tensor y = one_pass ? nn::linear_swiglu(x, w) : nn::swiglu(nn::linear(x, w));
      EXPECT_EQ(seen.count("hrm::linear_swiglu_bf16"), one_pass ? 1 : 0);
      y.backward(dy);
      return std::vector<torch::Tensor>{y.detach(), x.grad(), w.grad()};
    };
    const std::vector<torch::Tensor> one_pass = run(true), two_ops = run(false);
    for (size_t i = 0; i < 3; ++i)
      EXPECT_TRUE(torch::equal(one_pass[i], two_ops[i]))
          << "K " << K << ", "
          << (i == 0   ? "output"
              : i == 1 ? "dx"
                       : "dw")
          << ": max difference "
          << (one_pass[i].to(torch::kFloat) - two_ops[i].to(torch::kFloat)).abs().max().item<float>();
  }
}

// Whether y, float32 swiglu(x w^T) for w = [gate | up] [2n, K] and x [..., K], is within float32's worst-case rounding
// of the float64 result: each K-term float sum within gamma_K = K u / (1 - K u) of sum |x_k w_k| (Higham, any order,
// FMAs included), silu within 8 u, the product 1 u (u = 2^-24), silu' at most 1.1. A wrong row, block or column is
// off by the size of the values, ~1e5 times more.
::testing::AssertionResult within_float32_rounding(const torch::Tensor& y, const torch::Tensor& x,
                                                   const torch::Tensor& w) {
  const int64_t K = x.size(-1), n = w.size(0) / 2;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = n;
  if (y.sizes() != shape) return ::testing::AssertionFailure() << "shape " << y.sizes() << ", not " << shape;
  const double u = std::ldexp(1.0, -24), gamma = K * u / (1 - K * u);
  const torch::Tensor x2 = x.reshape({-1, K}).to(torch::kDouble), w2 = w.to(torch::kDouble);
  const torch::Tensor gate_up = x2.matmul(w2.t()), size = x2.abs().matmul(w2.abs().t()) * gamma;
  const torch::Tensor g = gate_up.narrow(1, 0, n), up = gate_up.narrow(1, n, n), v = up.abs();
  const torch::Tensor e_g = size.narrow(1, 0, n), e_v = size.narrow(1, n, n), s = torch::silu(g).abs();
  const torch::Tensor bound = 1.1 * e_g * (v + e_v) + s * e_v + 9 * u * (s + 1.1 * e_g) * (v + e_v);
  const torch::Tensor err = (y.reshape({-1, n}).to(torch::kDouble) - torch::silu(g) * up).abs();
  const int64_t over = (err > bound).sum().item<int64_t>();
  if (over == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << over << " of " << err.numel() << " elements past float32's rounding; worst "
                                       << (err - bound).max().item<double>() << " past it";
}

// float32 swiglu(linear(x, w)) in row blocks that stay in cache (no graph, oneDNN's sgemm) within float32's rounding
// of float64, as the two ops, where w and a block fit one core's L2; a large w goes the two ops' way.
TEST(Fused, Float32LinearSwigluInOnePassIsTheTwoOps) {
  nn::ScopedFusedKernels fused(FusedKernels::All);
  if (!nn::linear_uses_onednn()) GTEST_SKIP() << "this build has no oneDNN sgemm";
  const int64_t l2 = cpu_l2_cache_bytes();
  // every CPU measured has 512 KiB or more: all shapes below but [1024, 128] take the one pass there
  if (l2 >= (512 << 10)) EXPECT_TRUE(nn::linear_swiglu_in_blocks_pays(512, 128)) << l2 << " bytes of L2";
  EXPECT_FALSE(nn::linear_swiglu_in_blocks_pays(1024, 128) && l2 < (768 << 10)) << "w and its block exceed the L2";
  torch::manual_seed(13);
  // M: one partial block, several blocks with a partial last one; w [2n, K] up to the size taken in blocks.
  for (const auto& [M, K, N] :
       std::vector<std::array<int64_t, 3>>{{5, 64, 64}, {1000, 130, 192}, {333, 128, 1024}, {333, 128, 512}}) {
    const torch::Tensor x = torch::randn({M, K});
    const torch::Tensor w = torch::randn({N, K}) * 3 / std::sqrt(double(K));
    torch::NoGradGuard ng;
    RecordedNames seen;
    const torch::Tensor one_pass = nn::linear_swiglu(x, w);
    EXPECT_EQ(seen.count("hrm::linear_swiglu"), nn::linear_swiglu_in_blocks_pays(N, K) ? 1 : 0) << N << "x" << K;
    const torch::Tensor two_ops = nn::swiglu(nn::linear(x, w));
    EXPECT_TRUE(within_float32_rounding(one_pass, x, w)) << M << "x" << K << "x" << N;
    EXPECT_TRUE(within_float32_rounding(two_ops, x, w)) << M << "x" << K << "x" << N << ", the two ops";
    if (M > 1) EXPECT_FALSE(within_float32_rounding(one_pass.roll(1, 0), x, w)) << "rows out of place pass";
  }
  {  // the model's layout: [batch, tokens, K]
    const torch::Tensor x = torch::randn({2, 41, 130});
    const torch::Tensor w = torch::randn({192, 130}) / std::sqrt(130.0);
    torch::NoGradGuard ng;
    RecordedNames seen;
    const torch::Tensor one_pass = nn::linear_swiglu(x, w);
    EXPECT_EQ(seen.count("hrm::linear_swiglu"), nn::linear_swiglu_in_blocks_pays(192, 130) ? 1 : 0);
    EXPECT_TRUE(within_float32_rounding(one_pass, x, w));
  }
  const torch::Tensor x = torch::randn({8, 512});
  const torch::Tensor w = torch::randn({1024, 512});
  torch::NoGradGuard ng;
  RecordedNames seen;
  nn::linear_swiglu(x, w);
  EXPECT_EQ(seen.count("hrm::linear_swiglu"), 0) << "w of 512K elements: the two ops are faster";
}

// A bf16 HRM forward on the dot-product kernels against oneDNN's products: the same model up to bf16 rounding.
TEST(Fused, Bf16ModelOnDotKernelsMatchesOneDnnProducts) {
  if (const char* why = nn::why_no_bf16_dot_kernels()) GTEST_SKIP() << why;
  ResetBf16Route reset;
  nn::set_bf16_products_in_float32(false);
  const auto logits = [](bool dot) {
    return tiny_bf16_logits([dot] { nn::set_bf16_products_on_dot_kernels(dot); },
                            [dot](const RecordedNames& seen) { EXPECT_EQ(seen.count("hrm::linear_bf16") > 0, dot); });
  };
  const torch::Tensor a = logits(true), reference = logits(false);
  EXPECT_LT((a - reference).abs().max().item<double>(), 0.05 * reference.abs().max().item<double>());
}

// A self-attention block without a graph in one pass over its sequences is the op-by-op block, bit for bit: with
// RoPE and without, head widths 16 to 64, batches that do not split evenly over the threads.
TEST(Fused, TransformerBlockInOnePassIsTheOps) {
  if (const char* why = nn::why_no_bf16_dot_kernels()) GTEST_SKIP() << why;
  DotKernelRoute route;
  ASSERT_TRUE(nn::set_silu_table(true));
  torch::manual_seed(13);
  struct Case {
    int64_t hidden, heads, intermediate, B, S;
    bool rope;
  };
  for (const Case c : {Case{64, 4, 160, 3, 41, true}, Case{128, 2, 256, 5, 9, false}, Case{96, 2, 192, 1, 82, true}}) {
    SCOPED_TRACE("hidden " + std::to_string(c.hidden) + ", heads " + std::to_string(c.heads));
    nn::TransformerBlock block(c.hidden, c.heads, c.intermediate, 1e-5);
    nn::RopeTables rope;
    if (c.rope) std::tie(rope.cos, rope.sin) = nn::RotaryEmbedding(c.hidden / c.heads, c.S, 10000).tables(torch::kCPU);
    const torch::Tensor x = torch::randn({c.B, c.S, c.hidden}).to(torch::kBFloat16);
    const auto bf16 = [](const nn::CastedLinear& l) { return l->cast_weight(torch::kBFloat16); };
    torch::Tensor one_pass, ops;
    {
      torch::NoGradGuard no_grad;
      RecordedNames seen;
      one_pass = block->forward(x, rope);
      ASSERT_TRUE(nn::block_in_one_pass_fits_l2(c.hidden, c.hidden, c.intermediate, c.S)) << "an L2 under 330 KB";
      EXPECT_EQ(seen.count("hrm::transformer_block_bf16"), 1);
      const torch::Tensor qkv =
          nn::linear(x, bf16(block->self_attn->qkv_proj)).view({c.B, c.S, 3 * c.heads, c.hidden / c.heads});
      const torch::Tensor h =
          nn::add_rms_norm(x, nn::linear(nn::attention(qkv, c.heads, rope), bf16(block->self_attn->o_proj)), 1e-5);
      ops = nn::add_rms_norm(
          h, nn::linear(nn::linear_swiglu(h, bf16(block->mlp->gate_up_proj)), bf16(block->mlp->down_proj)), 1e-5);
      EXPECT_EQ(seen.count("hrm::transformer_block_bf16"), 1);
    }
    ASSERT_EQ(one_pass.sizes(), ops.sizes());
    EXPECT_TRUE(torch::equal(one_pass, ops))
        << "max difference " << (one_pass.to(torch::kFloat) - ops.to(torch::kFloat)).abs().max().item<float>();
    // With a graph to build, the modules (the same kernels, so the same values), and the block's gradient flows.
    RecordedNames seen;
    const torch::Tensor xg = x.detach().requires_grad_();
    const torch::Tensor with_graph = block->forward(xg, rope);
    EXPECT_EQ(seen.count("hrm::transformer_block_bf16"), 0);
    EXPECT_TRUE(torch::equal(with_graph, one_pass));
    with_graph.to(torch::kFloat).sum().backward();
    EXPECT_TRUE(block->mlp->down_proj->weight.grad().defined());
  }
  // Weights and a sequence's intermediates over one core's L2 (the paper preset's block): the modules.
  {
    EXPECT_TRUE(nn::block_in_one_pass_fits_l2(128, 128, 512, 82) || cpu_l2_cache_bytes() < (760 << 10));
    EXPECT_FALSE(nn::block_in_one_pass_fits_l2(512, 512, 1536, 82));
    nn::TransformerBlock block(128, 2, 512, 1e-5);
    torch::NoGradGuard no_grad;
    const torch::Tensor x = torch::randn({2, 3, 128}).to(torch::kBFloat16);
    RecordedNames seen;
    block->forward(x, {});
    EXPECT_EQ(seen.count("hrm::transformer_block_bf16"), nn::block_in_one_pass_fits_l2(128, 128, 512, 3) ? 1 : 0);
  }
  // Fused kernels off: the modules.
  nn::ScopedFusedKernels off(FusedKernels::Off);
  nn::TransformerBlock block(64, 4, 160, 1e-5);
  torch::NoGradGuard no_grad;
  RecordedNames seen;
  block->forward(torch::randn({2, 8, 64}).to(torch::kBFloat16), {});
  EXPECT_EQ(seen.count("hrm::transformer_block_bf16"), 0);
}
