#include "test_util.h"

using namespace hrm;
using hrm::test::error_of;
using hrm::test::random_batch;
using hrm::test::tiny_config;

TEST(Model, ShapesWithWidePuzzleEmbeddingAndLearnedPositions) {
  ModelConfig c = tiny_config();
  c.puzzle_emb_ndim = 40;  // 40 / 16 -> 3 prefix positions, zero padded
  c.pos_encodings = "learned";
  torch::manual_seed(0);
  ACTModel model = make_model(c);
  EXPECT_EQ(c.prefix_len(), 3);
  ASSERT_TRUE(model->inner->embed_pos);
  EXPECT_EQ(model->inner->embed_pos->embedding_weight.size(0), c.seq_len + 3);
  const Batch b = random_batch(c, 4);
  model->train();
  auto [carry, out] = model->forward(model->initial_carry(b), b);
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{4, c.seq_len, c.vocab_size}));
  EXPECT_EQ(carry.inner.z_H.sizes(), (std::vector<int64_t>{4, c.seq_len + 3, c.hidden_size}));
  EXPECT_EQ(out.q_halt_logits.sizes(), (std::vector<int64_t>{4}));
  EXPECT_TRUE(out.target_q_continue.defined());
  EXPECT_FALSE(carry.inner.z_H.requires_grad());
  EXPECT_FALSE(carry.inner.z_L.requires_grad());
  EXPECT_TRUE(out.logits.requires_grad());
}

TEST(Model, PuzzleEmbeddingGradientOnlyOnLocalRows) {
  ModelConfig c = tiny_config();
  torch::manual_seed(1);
  ACTModel model = make_model(c);
  const Batch b = random_batch(c, 4);
  model->train();
  auto [carry, out] = model->forward(model->initial_carry(b), b);
  act_loss(carry, out, LossType::StablemaxCrossEntropy).loss.backward();
  const auto& pe = model->inner->puzzle_emb;
  ASSERT_TRUE(pe->local_weights.grad().defined());
  EXPECT_EQ(pe->local_weights.grad().sizes(), (std::vector<int64_t>{4, c.puzzle_emb_ndim}));
  EXPECT_GT(pe->local_weights.grad().abs().sum().item<double>(), 0);
  EXPECT_FALSE(pe->weights.requires_grad());
  EXPECT_TRUE(torch::equal(pe->local_ids, b.puzzle_identifiers.to(torch::kLong)));
}

TEST(Model, OnlyTheLastStepCarriesGradient) {
  // With the one-step gradient, the gradient of the loss w.r.t. the carried-in state is zero when N*T > 1 ...
  ModelConfig c = tiny_config();
  c.puzzle_emb_ndim = 0;
  torch::manual_seed(2);
  auto inner = std::make_shared<HRMCore>(c);
  const Batch b = random_batch(c, 2);
  InnerCarry carry = inner->empty_carry(2);
  carry.z_H = torch::randn_like(carry.z_H).requires_grad_(true);
  carry.z_L = torch::randn_like(carry.z_L).requires_grad_(true);
  SegmentOutput out = inner->forward(carry, b);
  out.logits.sum().backward();
  EXPECT_FALSE(carry.z_H.grad().defined() && carry.z_H.grad().abs().sum().item<double>() > 0);
  // ... but the H/L weights do get gradients.
  EXPECT_GT(
      inner->H_level->layers[0]->as<nn::TransformerBlock>()->mlp->down_proj->weight.grad().abs().sum().item<double>(),
      0);
  EXPECT_GT(
      inner->L_level->layers[0]->as<nn::TransformerBlock>()->mlp->down_proj->weight.grad().abs().sum().item<double>(),
      0);
}

TEST(ACT, EvalRunsMaxStepsAndHaltsTogether) {
  ModelConfig c = tiny_config();
  torch::manual_seed(3);
  ACTModel model = make_model(c);
  model->eval();
  torch::NoGradGuard no_grad;
  const Batch b = random_batch(c, 4);
  Carry carry = model->initial_carry(b);
  for (int64_t s = 1; s <= c.halt_max_steps; ++s) {
    auto [next, out] = model->forward(carry, b);
    EXPECT_FALSE(out.target_q_continue.defined());
    EXPECT_TRUE(torch::equal(next.steps, torch::full({4}, s, torch::kInt)));
    EXPECT_EQ(next.halted.all().item<bool>(), s == c.halt_max_steps);
    EXPECT_EQ(next.halted.any().item<bool>(), s == c.halt_max_steps);
    carry = next;
  }
}

TEST(ACT, TrainingHaltsOnQAndReplacesHaltedSamples) {
  ModelConfig c = tiny_config();
  torch::manual_seed(4);
  ACTModel model = make_model(c);
  model->train();
  {
    torch::NoGradGuard ng;  // q_head weights are zero: q_halt = +5 > q_continue = -5 for every sample
    model->inner->q_head->bias.copy_(torch::tensor({5.0f, -5.0f}));
  }
  const Batch b1 = random_batch(c, 4, 10), b2 = random_batch(c, 4, 11);
  auto [carry1, out1] = model->forward(model->initial_carry(b1), b1);
  EXPECT_TRUE(carry1.halted.all().item<bool>());
  EXPECT_TRUE(torch::equal(carry1.current.inputs, b1.inputs));
  // All halted: the next forward takes the new batch.
  auto [carry2, out2] = model->forward(carry1, b2);
  EXPECT_TRUE(torch::equal(carry2.current.inputs, b2.inputs));
  EXPECT_TRUE(torch::equal(carry2.steps, torch::ones({4}, torch::kInt)));

  // Never halting on Q: samples continue with their own data until halt_max_steps.
  {
    torch::NoGradGuard ng;
    model->inner->q_head->bias.copy_(torch::tensor({-5.0f, 5.0f}));
  }
  Carry carry = model->initial_carry(b1);
  for (int64_t s = 1; s <= c.halt_max_steps; ++s) {
    auto [next, out] = model->forward(carry, s == 1 ? b1 : b2);
    EXPECT_TRUE(torch::equal(next.current.inputs, b1.inputs)) << s;
    EXPECT_EQ(next.halted.all().item<bool>(), s == c.halt_max_steps);
    carry = next;
  }
}

TEST(ACT, ExplorationForcesAMinimumOfTwoSteps) {
  ModelConfig c = tiny_config();
  c.halt_exploration_prob = 1.0;
  torch::manual_seed(5);
  ACTModel model = make_model(c);
  model->train();
  {
    torch::NoGradGuard ng;
    model->inner->q_head->bias.copy_(torch::tensor({5.0f, -5.0f}));  // Q says halt at once
  }
  const Batch b = random_batch(c, 4);
  auto [carry, out] = model->forward(model->initial_carry(b), b);
  EXPECT_FALSE(carry.halted.any().item<bool>());
}

TEST(ACT, NoContinueVariantHaltsOnQHaltAlone) {
  ModelConfig c = tiny_config();
  c.no_ACT_continue = true;
  torch::manual_seed(6);
  ACTModel model = make_model(c);
  model->train();
  {
    torch::NoGradGuard ng;
    model->inner->q_head->bias.copy_(torch::tensor({1.0f, 9.0f}));  // q_halt > 0 though q_continue is larger
  }
  const Batch b = random_batch(c, 4);
  auto [carry, out] = model->forward(model->initial_carry(b), b);
  EXPECT_TRUE(carry.halted.all().item<bool>());
  EXPECT_FALSE(out.target_q_continue.defined());
  const LossOutput loss = act_loss(carry, out, LossType::SoftmaxCrossEntropy);
  EXPECT_EQ(loss.metrics.count("q_continue_loss"), 0u);
}

TEST(Model, Bfloat16ForwardStaysCloseToFloat32) {
  ModelConfig c = tiny_config();
  torch::manual_seed(7);
  ACTModel f32 = make_model(c);
  c.forward_dtype = "bfloat16";
  ACTModel bf16 = make_model(c);
  StateDict s = model_state(f32);
  load_model_state(bf16, s, "f32 model");
  EXPECT_EQ(std::dynamic_pointer_cast<HRMCore>(bf16->inner)->H_init.scalar_type(), torch::kBFloat16);
  const Batch b = random_batch(c, 4);
  f32->eval();
  bf16->eval();
  torch::NoGradGuard ng;
  auto [c1, o1] = f32->forward(f32->initial_carry(b), b);
  auto [c2, o2] = bf16->forward(bf16->initial_carry(b), b);
  EXPECT_EQ(o2.logits.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(o2.q_halt_logits.scalar_type(), torch::kFloat);
  const double err = (o2.logits.to(torch::kFloat) - o1.logits).abs().max().item<double>();
  const double scale = o1.logits.abs().max().item<double>();
  EXPECT_LT(err, 0.1 * scale);
  EXPECT_GT(err, 0.0);  // it really ran in bf16
}

TEST(ACT, ExplorationDrawsDoNotDependOnHowTheGlobalBatchIsSplit) {
  // Every sample explores (prob 1): each must run a random 2..M segments. Two halves of a global batch of 8, each
  // marked with its row offset, draw the same per-sample minimum as the whole batch does.
  ModelConfig c = tiny_config();
  c.halt_max_steps = 8;
  c.halt_exploration_prob = 1.0;
  torch::manual_seed(6);
  ACTModel model = make_model(c);
  model->train();
  {
    torch::NoGradGuard ng;  // the Q head halts at once, so exploration alone keeps samples running
    model->inner->q_head->bias.copy_(torch::tensor({5.0f, -5.0f}));
  }
  const Batch whole = random_batch(c, 8, 12);
  auto halting_pattern = [&](const Batch& b) {
    Carry carry = model->initial_carry(b);
    std::vector<torch::Tensor> halted;
    torch::manual_seed(99);
    for (int64_t s = 0; s < c.halt_max_steps; ++s) {
      auto [next, out] = model->forward(carry, b);
      halted.push_back(next.halted.clone());
      carry = next;
    }
    return torch::stack(halted);  // [segments, B]
  };
  const torch::Tensor full = halting_pattern(whole);
  auto half = [&](int64_t offset) {
    return Batch{whole.inputs.narrow(0, offset, 4), whole.labels.narrow(0, offset, 4),
                 whole.puzzle_identifiers.narrow(0, offset, 4), /*global_size=*/8, /*row_offset=*/offset};
  };
  const torch::Tensor split = torch::cat({halting_pattern(half(0)), halting_pattern(half(4))}, 1);
  EXPECT_TRUE(torch::equal(full, split));
  // Exploration was in effect: not every sample halted after its first segment.
  EXPECT_FALSE(full[0].all().item<bool>());
}

TEST(Registry, NamesPublishedSpellingsAndUnknownModels) {
  EXPECT_EQ(model_names(), (std::vector<std::string>{"hrm", "trm", "transformer"}));
  EXPECT_EQ(canonical_model_name("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"), "trm");
  EXPECT_EQ(canonical_model_name("recursive_reasoning.transformers_baseline@Model_ACTV2"), "transformer");
  EXPECT_EQ(canonical_model_name("hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"), "hrm");
  const std::string e = error_of([] { canonical_model_name("recursive_reasoning.nope@X"); });
  EXPECT_NE(e.find("unknown model 'recursive_reasoning.nope@X'"), std::string::npos) << e;
  EXPECT_NE(e.find("hrm"), std::string::npos) << e;
  ModelConfig c = tiny_config();
  c.name = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1";
  ACTModel model = make_model(c);
  EXPECT_NE(std::dynamic_pointer_cast<HRMCore>(model->inner), nullptr);
  c.name = "nope";
  EXPECT_THROW(make_model(c), hrm::Error);
  c.name = "trm";
  EXPECT_NE(c.to_json().find("\"name\": \"trm\""), std::string::npos);
  EXPECT_EQ(ModelConfig::from_json(c.to_json(), "json").name, "trm");
}

TEST(Halting, RulesAreIndependentOfTheTarget) {
  const HaltingPolicy compare{HaltRule::QHaltAboveQContinue, false}, positive{HaltRule::QHaltPositive, false};
  EXPECT_TRUE(compare.halts(-1.0, -2.0));
  EXPECT_FALSE(compare.halts(1.0, 2.0));
  EXPECT_FALSE(positive.halts(-1.0, -2.0));
  EXPECT_TRUE(positive.halts(1.0, 2.0));
  ModelConfig c = tiny_config();
  ACTModel hrm_model = make_model(c);
  EXPECT_TRUE(hrm_model->inner->halting().target_q);
  EXPECT_EQ(hrm_model->inner->halting().rule, HaltRule::QHaltAboveQContinue);
  c.no_ACT_continue = true;
  ACTModel no_continue = make_model(c);
  EXPECT_FALSE(no_continue->inner->halting().target_q);
  EXPECT_EQ(no_continue->inner->halting().rule, HaltRule::QHaltPositive);
}

TEST(Carry, StateDictRoundTrips) {
  ModelConfig c = tiny_config();
  torch::manual_seed(8);
  ACTModel model = make_model(c);
  model->train();
  const Batch b = random_batch(c, 3);
  auto [carry, out] = model->forward(model->initial_carry(b), b);
  const StateDict s = carry.state_dict("carry.");
  EXPECT_EQ(s.size(), 7u);
  const Carry back = Carry::from_state_dict(s, "carry.", c.dtype(), torch::kCPU, "test");
  EXPECT_TRUE(torch::equal(back.inner.z_H, carry.inner.z_H));
  EXPECT_TRUE(torch::equal(back.inner.z_L, carry.inner.z_L));
  EXPECT_TRUE(torch::equal(back.current.puzzle_identifiers, carry.current.puzzle_identifiers));
  StateDict missing = s;
  missing.erase("carry.steps");
  const std::string e = error_of([&] { Carry::from_state_dict(missing, "carry.", c.dtype(), torch::kCPU, "ck.pt"); });
  EXPECT_NE(e.find("ck.pt: the carry has no 'carry.steps'"), std::string::npos) << e;
}

TEST(Analysis, ParticipationRatioCountsTheDimensionsInUse) {
  torch::manual_seed(1);
  // Three equal, independent directions in 8 dimensions: PR close to 3; one direction: 1.
  torch::Tensor x = torch::zeros({20000, 8});
  x.narrow(1, 0, 3).normal_();
  EXPECT_NEAR(analysis::participation_ratio_of(x), 3.0, 0.05);
  torch::Tensor line = torch::randn({1000, 1}) * torch::tensor({{1.0f, 2.0f, -1.0f, 0.5f}});
  EXPECT_NEAR(analysis::participation_ratio_of(line), 1.0, 1e-6);
  EXPECT_EQ(analysis::participation_ratio_of(torch::ones({1, 4})), 0.0);
}

TEST(Analysis, ResidualsHaveOneValuePerUpdateOfEverySegment) {
  ModelConfig c = tiny_config();  // H_cycles 2 x L_cycles 2, halt_max_steps 3
  torch::manual_seed(9);
  ACTModel model = make_model(c);
  hrm::test::TempDir dir;
  data::DatasetFolder folder(dir.file("d"));
  data::DatasetMetadata meta;
  meta.vocab_size = c.vocab_size;
  meta.num_puzzle_identifiers = c.num_puzzle_identifiers;
  for (const char* split : {"train", "test"}) {
    data::SplitBuilder b(c.seq_len);
    for (int i = 0; i < 6; ++i) {
      std::vector<uint8_t> x(static_cast<size_t>(c.seq_len), static_cast<uint8_t>(1 + i % 5));
      b.add_example(x, x);
      b.end_puzzle(0);
      b.end_group();
    }
    b.write(folder.split_dir(split), meta);
  }
  folder.commit();
  const data::PuzzleDataset test(data::LoaderConfig{dir.file("d"), "test", 4, true});
  const analysis::Residuals r = analysis::forward_residuals(model, test);
  ASSERT_EQ(r.z_L.size(), 3u);
  ASSERT_EQ(r.z_H.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(r.z_L[s].size(), 4u);  // N * T updates of z_L
    EXPECT_EQ(r.z_H[s].size(), 2u);  // N updates of z_H
    for (double v : r.z_L[s]) EXPECT_TRUE(std::isfinite(v) && v > 0);
  }
  EXPECT_EQ(r.batch_size, 4);
  EXPECT_FALSE(model->inner->observer);  // the analysis leaves no observer behind
}
