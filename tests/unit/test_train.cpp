#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace hrm;
using hrm::test::error_of;
using hrm::test::TempDir;
namespace fs = std::filesystem;

namespace {

// A learnable toy task: 4x4 Sudoku with few blanks.
std::string make_sudoku4(const TempDir& dir, int64_t n_train = 400, int64_t n_test = 64) {
  const std::string out = dir.file("sudoku4");
  std::vector<data::SudokuRecord> train, test;
  data::SudokuGenerateOptions g;
  g.min_blanks = 4;
  g.max_blanks = 8;
  g.progress = false;
  const auto shape = data::SudokuShape::of(4);
  data::generate_sudoku_split(shape, n_train, n_test, g, &train, &test);
  data::SudokuBuildOptions o;
  o.output_dir = out;
  data::build_sudoku_dataset(shape, train, test, o);
  return out;
}

std::string write_config(const TempDir& dir, const std::string& data, const std::string& extra = "") {
  fs::create_directories(dir.file("configs/arch"));
  std::ofstream(dir.file("configs/arch/tiny.yaml")) << "loss_type: stablemax_cross_entropy\nhalt_exploration_prob: 0.1\n"
                                                       "halt_max_steps: 3\nH_cycles: 2\nL_cycles: 2\nH_layers: 1\n"
                                                       "L_layers: 1\nhidden_size: 64\nnum_heads: 4\nexpansion: 2\n"
                                                       "puzzle_emb_ndim: 0\npos_encodings: rope\nforward_dtype: bfloat16\n";
  std::ofstream(dir.file("configs/toy.yaml")) << "defaults: {arch: tiny}\ndata_path: " << data
                                               << "\nglobal_batch_size: 32\nepochs: 12\neval_interval: 6\nlr: 3e-3\n"
                                                  "lr_min_ratio: 0.1\nlr_warmup_steps: 10\nweight_decay: 0.1\n"
                                                  "puzzle_emb_lr: 1e-2\nseed: 5\nthreads: 2\n"
                                               << extra;
  return dir.file("configs/toy.yaml");
}

std::vector<nlohmann::json> rows(const std::string& run_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["split"] != split) continue;
    j.erase("samples_per_s");
    out.push_back(j);
  }
  return out;
}
}  // namespace

TEST(TrainConfig, ComposesArchDefaultsAndOverrides) {
  TempDir dir;
  const std::string path = write_config(dir, "somewhere", "arch:\n  H_cycles: 3\n");
  const TrainConfig c = TrainConfig::load(path, {"lr=0.5", "arch.L_cycles=4", "arch.loss_type=softmax_cross_entropy"});
  EXPECT_EQ(c.name, "toy");
  EXPECT_EQ(c.arch.hidden_size, 64);       // from the arch file
  EXPECT_EQ(c.arch.H_cycles, 3);           // the config's arch section
  EXPECT_EQ(c.arch.L_cycles, 4);           // command line
  EXPECT_DOUBLE_EQ(c.lr, 0.5);
  EXPECT_EQ(c.loss_type, "softmax_cross_entropy");
  const TrainConfig again = TrainConfig::from_yaml(c.to_yaml(), "resolved");
  EXPECT_EQ(again.to_yaml(), c.to_yaml());
}

TEST(TrainConfig, ErrorsNameTheKeyTheFileAndTheClosestKey) {
  TempDir dir;
  std::string e = error_of([&] { TrainConfig::load(write_config(dir, "d", "learning_rat: 3\n")); });
  EXPECT_NE(e.find("toy.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'learning_rat'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(write_config(dir, "d"), {"arch.hiden_size=3"}); });
  EXPECT_NE(e.find("did you mean 'arch.hidden_size'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(write_config(dir, "d", "epochs: many\n")); });
  EXPECT_NE(e.find("expected an integer for 'epochs'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(write_config(dir, "d"), {"arch.vocab_size=3"}); });
  EXPECT_NE(e.find("comes from the dataset"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(dir.file("nope.yaml")); });
  EXPECT_NE(e.find("cannot open config"), std::string::npos) << e;
  std::ofstream(dir.file("bad.yaml")) << "a: [1, 2\n";
  e = error_of([&] { TrainConfig::load(dir.file("bad.yaml")); });
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
}

TEST(TrainConfig, ShippedConfigsLoad) {
  const std::string configs = std::string(HRM_SOURCE_DIR) + "/configs";
  for (const char* name : {"arc1", "arc2", "sudoku_extreme_1k", "maze_hard_1k", "sudoku_extreme_full", "quickstart_cpu"}) {
    const TrainConfig c = TrainConfig::load(configs + "/" + name + ".yaml");
    EXPECT_FALSE(c.data_path.empty()) << name;
  }
  const TrainConfig full = TrainConfig::load(configs + "/sudoku_extreme_full.yaml");
  EXPECT_EQ(full.loss_type, "softmax_cross_entropy");
  EXPECT_EQ(full.arch.L_cycles, 8);
  EXPECT_EQ(full.arch.pos_encodings, "learned");
  EXPECT_EQ(full.global_batch_size, 2304);
  const TrainConfig arc = TrainConfig::load(configs + "/arc1.yaml");
  EXPECT_EQ(arc.arch.hidden_size, 512);
  EXPECT_EQ(arc.arch.halt_max_steps, 16);
  EXPECT_EQ(arc.arch.forward_dtype, "bfloat16");
}

TEST(Train, EndToEndLearnsCheckpointsResumesEvaluatesAndSolves) {
  TempDir dir;
  const std::string data = make_sudoku4(dir);
  const std::string config = write_config(dir, data);

  // 1. An uninterrupted run.
  TrainConfig a = TrainConfig::load(config, {"run_dir=" + dir.file("run_a")});
  const TrainOutcome ra = train(a, false);
  ASSERT_TRUE(ra.finished);
  const auto train_a = rows(ra.run_dir, "train"), eval_a = rows(ra.run_dir, "eval");
  ASSERT_GT(train_a.size(), 100u);
  ASSERT_EQ(eval_a.size(), 2u);
  // Loss falls and accuracy rises on this learnable task.
  auto mean = [&](const char* key, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += train_a[i][key].get<double>();
    return s / static_cast<double>(to - from);
  };
  const size_t n = train_a.size();
  EXPECT_LT(mean("lm_loss", n - 20, n), 0.7 * mean("lm_loss", 0, 20));
  EXPECT_GT(eval_a.back()["accuracy"].get<double>(), 0.6);
  EXPECT_TRUE(fs::exists(ra.run_dir + "/config.yaml"));
  EXPECT_TRUE(fs::exists(ra.run_dir + "/metrics.csv"));

  // 2. The same run stopped after 50 steps and resumed logs the same metrics.
  TrainConfig b = TrainConfig::load(config, {"run_dir=" + dir.file("run_b"), "max_steps=50"});
  const TrainOutcome rb1 = train(b, false);
  EXPECT_TRUE(rb1.interrupted);
  EXPECT_EQ(rb1.steps, 50);
  const TrainOutcome rb2 = resume_training(dir.file("run_b"), {}, false);
  EXPECT_TRUE(rb2.finished);
  EXPECT_EQ(rows(rb2.run_dir, "train"), train_a);
  EXPECT_EQ(rows(rb2.run_dir, "eval"), eval_a);

  // 2b. Resuming from the checkpoint written at the first evaluation (an iteration boundary) does not repeat it.
  fs::copy(ra.run_dir, dir.file("run_c"), fs::copy_options::recursive);
  const std::string boundary = "step_" + std::to_string(eval_a.front()["step"].get<int64_t>()) + ".pt";
  ASSERT_TRUE(fs::exists(dir.file("run_c/checkpoints/" + boundary)));
  for (const auto& e : fs::directory_iterator(dir.file("run_c/checkpoints")))
    if (e.path().filename() != boundary) fs::remove(e.path());
  const TrainOutcome rc = resume_training(dir.file("run_c"), {}, false);
  EXPECT_TRUE(rc.finished);
  EXPECT_EQ(rows(rc.run_dir, "train"), train_a);
  EXPECT_EQ(rows(rc.run_dir, "eval"), eval_a);

  // 3. Evaluation of the checkpoint reproduces the run's last evaluation.
  const std::string ck = latest_checkpoint(ra.run_dir);
  InferenceSetup s = load_for_inference(ck, "", "", {}, "cpu");
  data::PuzzleDataset test(data::LoaderConfig{s.data_path, "test", 32, true});
  EvalOutput e = evaluate(s.model, test, s.loss_type, false);
  EXPECT_NEAR(e.metrics["exact_accuracy"], eval_a.back()["exact_accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(e.metrics["accuracy"], eval_a.back()["accuracy"].get<double>(), 1e-6);
  add_checker_metrics(detect_task_kind(s.data_path, test.metadata()), e, &e.metrics);
  EXPECT_GE(e.metrics["valid_solutions"], e.metrics["exact_accuracy"] - 1e-9);  // 4x4 puzzles here are unique
  // Inference-time scaling: more segments at evaluation.
  InferenceSetup more = load_for_inference(ck, "", "", {"arch.halt_max_steps=6"}, "cpu");
  EXPECT_EQ(more.model->config().halt_max_steps, 6);
  EXPECT_NEAR(evaluate(more.model, test, more.loss_type, false).metrics["steps"], 6.0, 1e-9);

  // 4. Solve one held-out puzzle with its trace.
  const torch::Tensor first = test.iteration_batches(0)[0].batch.inputs[0].contiguous();
  const std::vector<int32_t> tokens(first.data_ptr<int32_t>(), first.data_ptr<int32_t>() + 16);
  const SolveTrace trace = solve_with_trace(s.model, tokens);
  EXPECT_EQ(trace.segments.size(), 3u);
  EXPECT_GE(trace.halt_segment, 1);
  for (size_t c = 0; c < 16; ++c)
    if (tokens[c] > 1) EXPECT_EQ(trace.answer().prediction[c], tokens[c]);  // clues are copied

  // 5. A run folder with checkpoints is not overwritten; an incompatible dataset is a clear error.
  EXPECT_NE(error_of([&] { train(a, false); }).find("already has checkpoints"), std::string::npos);
  const std::string other = dir.file("maze");
  {
    std::vector<data::Maze> mt, me;
    data::generate_maze_split(9, 40, 8, 4, 1, &mt, &me, false);
    data::MazeBuildOptions mo;
    mo.output_dir = other;
    data::build_maze_dataset(mt, me, mo);
  }
  const std::string e2 = error_of([&] { load_for_inference(ck, other, "", {}, "cpu"); });
  EXPECT_NE(e2.find("is incompatible with"), std::string::npos) << e2;
  EXPECT_NE(e2.find("seq_len 16, vocab 6"), std::string::npos) << e2;
}

TEST(Train, NonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  const std::string data = make_sudoku4(dir, 200, 32);
  const std::string config = write_config(dir, data);
  TrainConfig c = TrainConfig::load(config, {"run_dir=" + dir.file("run"), "lr=1e30", "lr_warmup_steps=0",
                                             "arch.forward_dtype=float32"});
  const std::string e = error_of([&] { train(c, false); });
  EXPECT_NE(e.find("non-finite loss"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(dir.file("run/checkpoints")) && !fs::is_empty(dir.file("run/checkpoints")));
}

TEST(Eval, PublishedStateDictWithAConfigAndADataset) {
  HRM_REQUIRE_FIXTURE();
  TempDir dir;
  // A dataset shaped like the fixture's model: seq_len 16, vocab 7, 5 puzzle identifiers.
  {
    data::DatasetFolder folder(dir.file("data"));
    data::DatasetMetadata meta;
    meta.vocab_size = 7;
    meta.num_puzzle_identifiers = 5;
    for (const char* split : {"train", "test"}) {
      data::SplitBuilder b(16);
      for (int i = 0; i < 10; ++i) {
        std::vector<uint8_t> x(16), y(16);
        for (int c = 0; c < 16; ++c) {
          x[c] = static_cast<uint8_t>(1 + (i + c) % 6);
          y[c] = static_cast<uint8_t>(1 + (i * c) % 6);
        }
        b.add_example(x, y);
        b.end_puzzle(1 + i % 4);
        b.end_group();
      }
      b.write(folder.split_dir(split), meta);
    }
    folder.commit();
  }
  fs::create_directories(dir.file("configs/arch"));
  std::ofstream(dir.file("configs/arch/fixture.yaml"))
      << "loss_type: stablemax_cross_entropy\nhalt_exploration_prob: 0.0\nhalt_max_steps: 3\nH_cycles: 2\n"
         "L_cycles: 2\nH_layers: 2\nL_layers: 2\nhidden_size: 32\nnum_heads: 2\nexpansion: 4\npuzzle_emb_ndim: 32\n"
         "pos_encodings: rope\nforward_dtype: float32\n";
  std::ofstream(dir.file("configs/published.yaml")) << "defaults: {arch: fixture}\nglobal_batch_size: 6\n";
  InferenceSetup s = load_for_inference(hrm::test::fixture_dir() + "/reference_state_dict.pt", dir.file("data"),
                                        dir.file("configs/published.yaml"), {}, "cpu");
  EXPECT_TRUE(torch::equal(s.model->inner->lm_head->weight,
                           npy::load(hrm::test::fixture_dir() + "/params/model.inner.lm_head.weight.npy")));
  data::PuzzleDataset test(data::LoaderConfig{dir.file("data"), "test", 6, true});
  const EvalOutput e = evaluate(s.model, test, s.loss_type, false);
  EXPECT_EQ(e.metrics.at("count"), 10);
  EXPECT_EQ(e.predictions.size(0), 10);
  EXPECT_DOUBLE_EQ(e.metrics.at("steps"), 3.0);
  // Without the config, a published state dict cannot be interpreted.
  EXPECT_THROW(load_for_inference(hrm::test::fixture_dir() + "/reference_state_dict.pt", dir.file("data"), "", {}, "cpu"),
               hrm::Error);
}
