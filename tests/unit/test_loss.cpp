#include <cmath>

#include "test_util.h"

using namespace hrm;

TEST(Loss, StablemaxMatchesDefinition) {
  const torch::Tensor logits = torch::tensor({{-2.0f, 0.0f, 3.0f}, {1.5f, -0.5f, 0.25f}}).unsqueeze(0);  // [1,2,3]
  const torch::Tensor labels = torch::tensor({{2, 0}}, torch::kLong);
  const torch::Tensor loss = stablemax_cross_entropy(logits, labels);
  EXPECT_EQ(loss.scalar_type(), torch::kDouble);
  auto s = [](double x) { return x < 0 ? 1.0 / (1.0 - x) : x + 1.0; };
  const double row0 = s(-2) + s(0) + s(3), row1 = s(1.5) + s(-0.5) + s(0.25);
  EXPECT_NEAR(loss[0][0].item<double>(), -std::log(s(3) / row0), 1e-7);
  EXPECT_NEAR(loss[0][1].item<double>(), -std::log(s(1.5) / row1), 1e-7);
}

TEST(Loss, IgnoredLabelsContributeNothing) {
  torch::manual_seed(0);
  const torch::Tensor logits = torch::randn({2, 5, 4});
  torch::Tensor labels = torch::randint(0, 4, {2, 5}, torch::kLong);
  labels[0][1] = kIgnoreLabel;
  labels[1][4] = kIgnoreLabel;
  for (auto fn : {stablemax_cross_entropy, softmax_cross_entropy}) {
    const torch::Tensor l = fn(logits, labels, kIgnoreLabel);
    EXPECT_EQ(l[0][1].item<double>(), 0.0);
    EXPECT_EQ(l[1][4].item<double>(), 0.0);
    EXPECT_GT(l[0][0].item<double>(), 0.0);
  }
  const torch::Tensor ce = softmax_cross_entropy(logits, labels);
  const torch::Tensor expect =
      -torch::log_softmax(logits, -1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1);
  EXPECT_NEAR(ce[1][2].item<double>(), expect[1][2].item<double>(), 1e-6);
}

TEST(Loss, ActLossMetricsCountHaltedSamplesOnly) {
  // Two samples, 3 tokens, vocab 2. Sample 0 all correct, sample 1 one token wrong; only sample 0 halted.
  Carry carry;
  carry.current.labels = torch::tensor({{1, 0, -100}, {1, 1, 0}}, torch::kLong);
  carry.halted = torch::tensor({true, false});
  carry.steps = torch::tensor({3, 1}, torch::kInt);
  ACTOutputs out;
  out.logits = torch::tensor({{{0.f, 1.f}, {1.f, 0.f}, {0.f, 0.f}}, {{0.f, 1.f}, {1.f, 0.f}, {1.f, 0.f}}});
  out.q_halt_logits = torch::tensor({2.0f, -1.0f});
  out.q_continue_logits = torch::tensor({0.0f, 0.0f});
  out.target_q_continue = torch::tensor({0.5f, 0.5f});
  const LossOutput r = act_loss(carry, out, LossType::SoftmaxCrossEntropy);
  EXPECT_EQ(r.metrics.at("count").item<int64_t>(), 1);
  EXPECT_NEAR(r.metrics.at("accuracy").item<double>(), 1.0, 1e-6);
  EXPECT_EQ(r.metrics.at("exact_accuracy").item<int64_t>(), 1);
  EXPECT_EQ(r.metrics.at("q_halt_accuracy").item<int64_t>(), 1);
  EXPECT_EQ(r.metrics.at("steps").item<int64_t>(), 3);
  // lm loss: per sequence mean over valid tokens, summed over the batch (halted or not).
  const torch::Tensor per = softmax_cross_entropy(out.logits, carry.current.labels);
  const double lm = (per[0].sum() / 2 + per[1].sum() / 3).item<double>();
  EXPECT_NEAR(r.metrics.at("lm_loss").item<double>(), lm, 1e-6);
  auto bce = [](double x, double y) { return std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::abs(x))); };
  const double q_halt = bce(2.0, 1.0) + bce(-1.0, 0.0), q_cont = bce(0.0, 0.5) * 2;
  EXPECT_NEAR(r.metrics.at("q_halt_loss").item<double>(), q_halt, 1e-6);
  EXPECT_NEAR(r.metrics.at("q_continue_loss").item<double>(), q_cont, 1e-6);
  EXPECT_NEAR(r.loss.item<double>(), lm + 0.5 * (q_halt + q_cont), 1e-5);
}

TEST(Loss, LossTypeNames) {
  EXPECT_EQ(loss_type_from_string("softmax_cross_entropy"), LossType::SoftmaxCrossEntropy);
  EXPECT_EQ(to_string(loss_type_from_string("stablemax_cross_entropy")), "stablemax_cross_entropy");
  EXPECT_THROW(loss_type_from_string("mse"), hrm::Error);
}
