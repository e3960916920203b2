#include <cmath>

#include "test_util.h"

using namespace hrm;

TEST(AdamATan2, MatchesTheUpdateRuleInDouble) {
  torch::manual_seed(0);
  torch::Tensor p = torch::randn({5, 3}).requires_grad_(true);
  torch::Tensor ref = p.detach().to(torch::kDouble).clone();
  torch::Tensor m = torch::zeros_like(ref), v = torch::zeros_like(ref);
  const double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.95;
  optim::AdamATan2 opt({{"p", p}}, {b1, b2, wd});
  for (int t = 1; t <= 4; ++t) {
    const torch::Tensor g = torch::randn({5, 3}) * (t == 2 ? 1e-3 : 1.0);
    p.mutable_grad() = g.clone();
    opt.step(lr);
    const torch::Tensor gd = g.to(torch::kDouble);
    ref.mul_(1 - lr * wd);
    m = m + (gd - m) * (1 - b1);
    v = b2 * v + (1 - b2) * gd * gd;
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    ref -= lr / bc1 * torch::atan2(m, v.sqrt() / std::sqrt(bc2));
    EXPECT_TRUE(torch::allclose(p.detach().to(torch::kDouble), ref, 1e-6, 1e-6)) << "step " << t;
    EXPECT_TRUE(torch::allclose(opt.exp_avg("p").to(torch::kDouble), m, 1e-6, 1e-7));
  }
  EXPECT_EQ(opt.step_count(), 4);
}

TEST(AdamATan2, StateDictRoundTripAndValidation) {
  torch::Tensor p = torch::randn({4}).requires_grad_(true);
  optim::AdamATan2 a({{"p", p}}, {});
  p.mutable_grad() = torch::ones({4});
  a.step(0.1);
  const auto state = a.state_dict();
  torch::Tensor q = p.detach().clone().requires_grad_(true);
  optim::AdamATan2 b({{"p", q}}, {});
  b.load_state_dict(state, "test");
  EXPECT_EQ(b.step_count(), 1);
  EXPECT_TRUE(torch::equal(b.exp_avg("p"), a.exp_avg("p")));
  auto bad = state;
  bad["exp_avg.p"] = torch::zeros({5});
  EXPECT_THROW(b.load_state_dict(bad, "test"), hrm::Error);
  auto unknown = state;
  unknown["exp_avg.other"] = torch::zeros({4});
  unknown["exp_avg_sq.other"] = torch::zeros({4});
  EXPECT_THROW(b.load_state_dict(unknown, "test"), hrm::Error);
}

TEST(SparseSignSGD, SumsRepeatedIdsBeforeTheSign) {
  nn::SparsePuzzleEmbedding emb(6, 2, torch::kFloat);
  {
    torch::NoGradGuard ng;
    emb->weights.copy_(torch::arange(12, torch::kFloat).view({6, 2}));
  }
  emb->train();
  const torch::Tensor ids = torch::tensor({2, 2, 4}, torch::kInt);
  const torch::Tensor out = emb(ids);
  // Per-row gradients: id 2 gets (+1, -1) and (-3, +0.5) -> sum (-2, -0.5); id 4 gets (0.5, 0).
  const torch::Tensor upstream = torch::tensor({{1.0f, -1.0f}, {-3.0f, 0.5f}, {0.5f, 0.0f}});
  (out * upstream).sum().backward();
  const double lr = 0.1, wd = 0.5;
  optim::SparseSignSGD opt(emb, wd);
  const torch::Tensor before = emb->weights.clone();
  opt.step(lr);
  const torch::Tensor after = emb->weights;
  const double decay = 1 - lr * wd;
  EXPECT_NEAR(after[2][0].item<float>(), before[2][0].item<float>() * decay + lr, 1e-6);  // sign(-2) = -1
  EXPECT_NEAR(after[2][1].item<float>(), before[2][1].item<float>() * decay + lr, 1e-6);  // sign(-0.5) = -1
  EXPECT_NEAR(after[4][0].item<float>(), before[4][0].item<float>() * decay - lr, 1e-6);
  EXPECT_NEAR(after[4][1].item<float>(), before[4][1].item<float>() * decay, 1e-6);  // sign(0) = 0
  for (int r : {0, 1, 3, 5}) EXPECT_TRUE(torch::equal(after[r], before[r])) << r;    // untouched rows
}

TEST(Schedule, WarmupThenCosineToMinRatio) {
  using optim::cosine_schedule_with_warmup;
  const double lr = 1e-3;
  EXPECT_EQ(cosine_schedule_with_warmup(0, lr, 100, 1000, 0.1), 0.0);
  EXPECT_NEAR(cosine_schedule_with_warmup(50, lr, 100, 1000, 0.1), 0.5 * lr, 1e-15);
  EXPECT_NEAR(cosine_schedule_with_warmup(100, lr, 100, 1000, 0.1), lr, 1e-15);
  EXPECT_NEAR(cosine_schedule_with_warmup(550, lr, 100, 1000, 0.1), lr * (0.1 + 0.9 * 0.5), 1e-15);
  EXPECT_NEAR(cosine_schedule_with_warmup(1000, lr, 100, 1000, 0.1), 0.1 * lr, 1e-15);
  double prev = lr;
  for (int s = 101; s <= 1000; s += 13) {
    const double cur = cosine_schedule_with_warmup(s, lr, 100, 1000, 0.1);
    EXPECT_LE(cur, prev);
    prev = cur;
  }
  EXPECT_NEAR(cosine_schedule_with_warmup(10, lr, 0, 10, 0.0), 0.0, 1e-15);
}

// The fused step (one pass, nn::adam_atan2_update) against LibTorch's op chain on the avx512 and avx2 paths (those
// this CPU runs): m and v bit-identical, and p too except in the tail LibTorch's vector loop leaves to std::atan2
// (< 32 elements with one thread), where p is within float rounding.
TEST(AdamATan2, FusedStepMatchesLibTorchsOps) {
  const int threads = at::get_num_threads();
  at::set_num_threads(1);  // one chunk: LibTorch's only scalar tail is the last numel % 32 elements
  const nn::CpuIsa isa_before = nn::cpu_isa();
  int paths = 0;
  for (nn::CpuIsa isa : nn::supported_cpu_isas()) {
    if (isa == nn::CpuIsa::Generic) continue;
    ++paths;
    nn::set_cpu_isa(isa);
    {
      // the fused step runs here (otherwise both optimizers below would run the ops and agree trivially)
      nn::ScopedFusedKernels on(nn::FusedKernels::All);
      const torch::Tensor p = torch::zeros({4}), g = torch::ones({4}), m = torch::zeros({4}), v = torch::zeros({4});
      ASSERT_TRUE(nn::adam_atan2_update(p, g, m, v, {1.0, 0.1, 0.95, 1.0, -1.0}));
    }
    for (int64_t n : {1, 15, 16, 33, 4099, 70001}) {
      SCOPED_TRACE(std::string(nn::cpu_isa_name(isa)) + ", " + std::to_string(n) + " elements");
      torch::manual_seed(n);
      const torch::Tensor start = torch::randn({n});
      torch::Tensor fused = start.clone(), ops = start.clone();
      // lerp's weight >= 0.5 too (beta1 0.4): LibTorch's other formula
      const double b1 = n == 4099 ? 0.4 : 0.9;
      optim::AdamATan2 fused_opt({{"p", fused}}, {b1, 0.95, 0.1}), ops_opt({{"p", ops}}, {b1, 0.95, 0.1});
      for (int t = 1; t <= 3; ++t) {
        // gradients of mixed scales, with exact zeros
        torch::Tensor g = torch::randn({n}) * torch::pow(10.0, torch::randint(-6, 1, {n}).to(torch::kFloat));
        g.index_put_({torch::rand({n}) < 0.05}, 0.0);
        fused.mutable_grad() = g.clone();
        ops.mutable_grad() = g.clone();
        {
          nn::ScopedFusedKernels on(nn::FusedKernels::All);
          fused_opt.step(1e-3);
        }
        {
          nn::ScopedFusedKernels off(nn::FusedKernels::Off);
          ops_opt.step(1e-3);
        }
        EXPECT_TRUE(torch::equal(fused_opt.exp_avg("p"), ops_opt.exp_avg("p"))) << "step " << t;
        EXPECT_TRUE(torch::equal(fused_opt.exp_avg_sq("p"), ops_opt.exp_avg_sq("p"))) << "step " << t;
        const int64_t body = n / 32 * 32;
        EXPECT_TRUE(torch::equal(fused.detach().slice(0, 0, body), ops.detach().slice(0, 0, body))) << "step " << t;
        EXPECT_TRUE(torch::allclose(fused.detach(), ops.detach(), 1e-6, 1e-9)) << "step " << t;
        fused.detach().copy_(ops.detach());  // each step from the same state
      }
    }
  }
  nn::set_cpu_isa(isa_before);
  at::set_num_threads(threads);
  if (paths == 0) GTEST_SKIP() << "this CPU has no AVX2 (only the generic path, where the ops run)";
}

TEST(AdamATan2, FusedStepTakesOnlyWhatItCovers) {
  nn::ScopedFusedKernels on(nn::FusedKernels::All);
  const nn::AdamAtan2Scalars s{0.999, 0.1, 0.95, 0.5, -1e-3};
  auto update = [&](const torch::Tensor& p, const torch::Tensor& g) {
    torch::Tensor m = torch::zeros_like(p), v = torch::zeros_like(p);
    return nn::adam_atan2_update(p, g, m, v, s);
  };
  const torch::Tensor p = torch::randn({8, 6}), g = torch::randn({8, 6});
  const torch::Tensor before = p.clone();
  EXPECT_FALSE(update(p, g.t().contiguous().t()));  // a strided gradient: the ops run
  EXPECT_FALSE(update(p.to(torch::kBFloat16), g.to(torch::kBFloat16)));
  EXPECT_FALSE(update(p, g.to(torch::kDouble)));
  EXPECT_TRUE(torch::equal(p, before));  // nothing written where it declined
  {
    nn::ScopedFusedKernels off(nn::FusedKernels::Off);
    EXPECT_FALSE(update(p, g));
  }
  const nn::CpuIsa isa_before = nn::cpu_isa();
  nn::set_cpu_isa(nn::CpuIsa::Generic);
  EXPECT_FALSE(update(p, g));  // LibTorch's ops are faster there
  nn::set_cpu_isa(isa_before);
  EXPECT_TRUE(torch::equal(p, before));
  if (nn::cpu_isa() == nn::CpuIsa::Generic) GTEST_SKIP() << "no AVX2: the generic path has no fused step";
  EXPECT_TRUE(update(p, g));
  EXPECT_FALSE(torch::equal(p, before));
}
