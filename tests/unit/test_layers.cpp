#include <cmath>

#include "test_util.h"

using namespace hrm;

TEST(TruncNormal, HasRequestedStdAndBounds) {
  torch::manual_seed(0);
  for (double std : {1.0, 0.25}) {
    torch::Tensor t = torch::empty({1 << 20});
    nn::trunc_normal_(t, std);
    const double sample_std = t.std().item<double>();
    EXPECT_NEAR(sample_std, std, 0.005 * std);
    EXPECT_NEAR(t.mean().item<double>(), 0.0, 0.005 * std);
    // Truncated at +-2 of the pre-truncation std, which is std / 0.8796 (the truncated normal's std ratio).
    const double bound = 2 * std / 0.87962566;
    EXPECT_LE(t.abs().max().item<double>(), bound * (1 + 1e-6));
    EXPECT_GT(t.abs().max().item<double>(), 0.99 * bound);
  }
  torch::Tensor z = torch::ones({10});
  nn::trunc_normal_(z, 0.0);
  EXPECT_EQ(z.abs().sum().item<double>(), 0.0);
}

TEST(Layers, LinearInitIsLecun) {
  torch::manual_seed(1);
  nn::CastedLinear lin(256, 512, true);
  EXPECT_NEAR(lin->weight.std().item<double>(), 1.0 / 16.0, 0.002);
  EXPECT_EQ(lin->bias.abs().sum().item<double>(), 0.0);
}

TEST(Layers, RmsNormIsFloat32AndUnitRms) {
  const torch::Tensor x = torch::randn({4, 7, 32}) * 3 + 1;
  const torch::Tensor y = nn::rms_norm(x, 1e-5);
  EXPECT_TRUE(torch::allclose(y.square().mean(-1), torch::ones({4, 7}), 1e-4, 1e-4));
  const torch::Tensor yb = nn::rms_norm(x.to(torch::kBFloat16), 1e-5);
  EXPECT_EQ(yb.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(yb.to(torch::kFloat), y, 2e-2, 2e-2));
}

TEST(Layers, RopeIsIdentityAtZeroAndRelative) {
  const int64_t D = 8, S = 12;
  nn::RotaryEmbedding rope(D, S, 10000.0);
  auto [cos, sin] = rope.tables(torch::kCPU);
  ASSERT_EQ(cos.sizes(), (std::vector<int64_t>{S, D}));
  torch::manual_seed(2);
  // The same q at every position, the same k at every position.
  const torch::Tensor q = torch::randn({1, 1, 1, D}).expand({1, S, 1, D}).contiguous();
  const torch::Tensor k = torch::randn({1, 1, 1, D}).expand({1, S, 1, D}).contiguous();
  const torch::Tensor rq = nn::apply_rotary(q, cos, sin), rk = nn::apply_rotary(k, cos, sin);
  EXPECT_TRUE(torch::allclose(rq[0][0], q[0][0]));
  // Rotations keep norms.
  EXPECT_TRUE(torch::allclose(rq.norm(2, -1), q.norm(2, -1), 1e-5, 1e-5));
  // <R_m q, R_n k> depends only on m - n.
  const torch::Tensor dots = torch::matmul(rq.squeeze(2)[0], rk.squeeze(2)[0].t());  // [S, S]
  for (int64_t m = 1; m < S; ++m)
    for (int64_t n = 1; n < S; ++n) EXPECT_NEAR(dots[m][n].item<float>(), dots[m - 1][n - 1].item<float>(), 1e-4);
  // ... and not trivially: different offsets give different products.
  EXPECT_GT(std::abs(dots[0][1].item<float>() - dots[0][5].item<float>()), 1e-4);
}

TEST(Layers, SwiGLUIntermediateSize) {
  ModelConfig c;
  c.hidden_size = 512;
  c.expansion = 4;
  EXPECT_EQ(c.mlp_intermediate(), 1536);  // round(1365.3) -> 1536
  c.hidden_size = 32;
  EXPECT_EQ(c.mlp_intermediate(), 256);
  c.hidden_size = 384;
  EXPECT_EQ(c.mlp_intermediate(), 1024);  // exactly 1024
  c.hidden_size = 3;
  c.expansion = 0.75;
  EXPECT_EQ(c.mlp_intermediate(), 256);  // round(1.5) = 2 (half to even)
}

TEST(Layers, CachedCastEqualsOnTheFlyCastAndReachesMasterGradients) {
  torch::manual_seed(3);
  nn::CastedLinear lin(16, 8, true);
  const torch::Tensor x = torch::randn({4, 16}).to(torch::kBFloat16);
  const torch::Tensor direct = lin(x);
  lin->cast_weights(torch::kBFloat16);
  const torch::Tensor cached = lin(x);
  EXPECT_TRUE(torch::equal(direct, cached));
  cached.to(torch::kFloat).sum().backward();
  lin->release_cast();
  ASSERT_TRUE(lin->weight.grad().defined());
  EXPECT_EQ(lin->weight.grad().scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(lin->weight.grad(), x.to(torch::kFloat).sum(0).expand({8, 16}), 1e-2, 1e-2));
}

TEST(Layers, AttentionIsNonCausal) {
  torch::manual_seed(4);
  nn::Attention attn(16, 2);
  nn::RotaryEmbedding rope(8, 6, 10000.0);
  auto [cos, sin] = rope.tables(torch::kCPU);
  const torch::Tensor x = torch::randn({1, 6, 16});
  const torch::Tensor y = attn(x, nn::RopeTables{cos, sin});
  torch::Tensor x2 = x.clone();
  x2[0][5] += 1.0;  // changing the last position changes the first output (no causal mask)
  const torch::Tensor y2 = attn(x2, nn::RopeTables{cos, sin});
  EXPECT_GT((y2[0][0] - y[0][0]).abs().max().item<float>(), 1e-4);
}

// Long sequences without a graph take a few (batch, head) pairs at a time (no score matrix above 8 MiB); each pair
// is computed as in the batched product, so the result is the same to the bit.
TEST(Attention, LongSequencesWithoutAGraphMatchTheBatchedProduct) {
  torch::manual_seed(0);
  const int64_t B = 2, S = 800, H = 4, D = 8;  // 2.4 MiB per pair: chunks of 3 heads and of 1
  const torch::Tensor qkv = torch::randn({B, S, 3 * H, D});
  const nn::RopeTables rope{torch::cos(torch::randn({S, D})), torch::sin(torch::randn({S, D}))};
  torch::Tensor tiled, whole;
  {
    torch::NoGradGuard no_grad;
    tiled = nn::attention_ops(qkv, H, rope);
  }
  whole = nn::attention_ops(qkv.clone().requires_grad_(true), H, rope).detach();
  ASSERT_EQ(tiled.sizes(), whole.sizes());
  EXPECT_TRUE(torch::equal(tiled, whole)) << (tiled - whole).abs().max().item<double>();
}
