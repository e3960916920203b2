#include <filesystem>

#include "hrm/eval/evaluate.h"
#include "test_util.h"

using namespace hrm::data;

namespace {
std::string arc_dir() { return hrm::test::shared_dir() + "/data/arc-agi-1"; }
}  // namespace

TEST(Arc, InversesAreExactOnEverySharedTask) {
  if (!std::filesystem::exists(arc_dir())) GTEST_SKIP() << "no shared ARC data";
  const auto tasks = read_arc_folder(arc_dir());
  ASSERT_EQ(tasks.size(), 800u);
  std::mt19937_64 rng(0);
  int64_t grids = 0;
  for (const auto& task : tasks) {
    ArcAugment a;
    a.tid = static_cast<int>(grids % 8);
    std::vector<uint8_t> colours{1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::shuffle(colours.begin(), colours.end(), rng);
    std::copy(colours.begin(), colours.end(), a.colour_map.begin() + 1);
    std::string id;
    ArcAugment parsed;
    ASSERT_TRUE(ArcAugment::parse(a.name(task.id), &id, &parsed) || a.identity());
    if (!a.identity()) {
      EXPECT_EQ(id, task.id);
      EXPECT_EQ(parsed.tid, a.tid);
      EXPECT_EQ(parsed.colour_map, a.colour_map);
    }
    for (const auto* list : {&task.train, &task.test})
      for (const auto& p : *list)
        for (const ArcGrid* g : {&p.input, &p.output}) {
          ++grids;
          const ArcGrid t = a.apply(*g);
          EXPECT_EQ(crop_arc_grid(encode_arc_grid(t)), t);  // crop inverts encode
          EXPECT_EQ(a.invert(t), *g);                       // inverse dihedral + colour map
        }
  }
  EXPECT_GT(grids, 5000);
}

TEST(Arc, KaggleLayoutMatchesTheFolderLayout) {
  const std::string prefix = hrm::test::shared_dir() + "/data/arc-kaggle/arc-agi";
  if (!std::filesystem::exists(prefix + "_evaluation_challenges.json") || !std::filesystem::exists(arc_dir()))
    GTEST_SKIP() << "no shared ARC data";
  const auto kaggle = read_arc_kaggle(prefix, "evaluation");
  const auto folder = read_arc_folder(arc_dir());
  std::map<std::string, const ArcTask*> by_id;
  for (const auto& t : folder)
    if (t.set == "evaluation") by_id[t.id] = &t;
  ASSERT_EQ(kaggle.size(), by_id.size());
  for (const auto& t : kaggle) {
    ASSERT_TRUE(by_id.count(t.id)) << t.id;
    ASSERT_EQ(t.test.size(), by_id[t.id]->test.size());
    for (size_t i = 0; i < t.test.size(); ++i) EXPECT_EQ(t.test[i].output, by_id[t.id]->test[i].output);
  }
}

TEST(Arc, BuilderSplitsAugmentsAndWarnsAboutOverlap) {
  hrm::test::TempDir dir;
  ArcTask a{"aaaa", "training", {{{2, 2, {1, 2, 3, 4}}, {2, 2, {4, 3, 2, 1}}}}, {{{1, 2, {5, 6}}, {1, 2, {6, 5}}}}};
  ArcTask b{"bbbb",
            "evaluation",
            {{{1, 1, {3}}, {2, 1, {3, 3}}}, {{1, 1, {7}}, {2, 1, {7, 7}}}},
            {{{1, 1, {1}}, {2, 1, {1, 1}}}}};
  ArcTask dup = b;
  dup.set = "training";  // an evaluation task leaking into training
  ArcBuildOptions o;
  o.output_dir = dir.file("arc");
  o.num_aug = 10;
  o.progress = false;
  const ArcSummary s = build_arc_dataset({a, b, dup}, o);
  ASSERT_EQ(s.warnings.size(), 1u);
  EXPECT_EQ(s.test_tasks, 1);
  EXPECT_EQ(s.test_groups, 1);
  // Task b (1x1 grids with two colours per pair) has many distinct augmentations; each is its own identifier.
  EXPECT_EQ(s.test_examples, 11);  // 1 test pair x (1 + 10 variants)
  hrm::data::LoaderConfig lc{o.output_dir, "test", 11, true};
  PuzzleDataset test(lc);
  const auto batch = test.iteration_batches(0).at(0);
  std::set<int> ids;
  for (int i = 0; i < 11; ++i) ids.insert(batch.batch.puzzle_identifiers[i].item<int>());
  EXPECT_EQ(ids.size(), 11u);
  // Translation: some demonstrations of the train split do not start at the origin.
  PuzzleDataset train(hrm::data::LoaderConfig{o.output_dir, "train", 8, true});
  int64_t translated = 0, total = 0;
  for (const auto& tb : train.iteration_batches(0))
    for (int64_t i = 0; i < tb.batch.size(); ++i, ++total) translated += tb.batch.inputs[i][0].item<int>() == 0;
  EXPECT_GT(translated, 0);
  EXPECT_LT(translated, total);
  EXPECT_TRUE(std::filesystem::exists(o.output_dir + "/test_puzzles.json"));
  EXPECT_TRUE(std::filesystem::exists(o.output_dir + "/identifiers.json"));
}

TEST(Arc, MalformedTasksAreNamed) {
  hrm::test::TempDir dir;
  std::filesystem::create_directories(dir.file("x/training"));
  std::ofstream(dir.file("x/training/t1.json")) << R"({"train": [{"input": [[1, 12]], "output": [[1]]}], "test": []})";
  try {
    read_arc_folder(dir.file("x"));
    FAIL();
  } catch (const hrm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("t1.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0..9"), std::string::npos) << e.what();
  }
  std::string big = "[";
  for (int r = 0; r < 31; ++r) big += std::string(r ? "," : "") + "[1]";
  big += "]";
  EXPECT_THROW(parse_arc_grid(big, "big"), hrm::Error);
  EXPECT_THROW(parse_arc_grid("[[1,2],[3]]", "ragged"), hrm::Error);
  EXPECT_THROW(parse_arc_grid("[[1,2]", "json"), hrm::Error);
}

TEST(Arc, VotingMapsPredictionsBackAndScoresPassAtK) {
  hrm::test::TempDir dir;
  // One evaluation task with a 2x3 test output; variants are dihedral/colour augmentations.
  ArcTask t{"cccc",
            "evaluation",
            {{{2, 3, {1, 2, 3, 4, 5, 6}}, {2, 3, {6, 5, 4, 3, 2, 1}}}},
            {{{2, 3, {1, 1, 2, 2, 3, 3}}, {2, 3, {3, 3, 2, 2, 1, 1}}}}};
  ArcBuildOptions o;
  o.output_dir = dir.file("arc");
  o.num_aug = 7;
  o.progress = false;
  build_arc_dataset({t}, o);
  PuzzleDataset test(LoaderConfig{o.output_dir, "test", 64, true});
  const LoadedBatch b = test.iteration_batches(0).at(0);
  const int64_t n = std::min<int64_t>(b.batch.size(), b.effective_size);
  hrm::EvalOutput out;
  out.inputs = b.batch.inputs.narrow(0, 0, n);
  out.labels = b.batch.labels.narrow(0, 0, n).clone();
  out.puzzle_identifiers = b.batch.puzzle_identifiers.narrow(0, 0, n);
  out.q_halt_logits = torch::zeros({n});
  // Perfect predictions: the labels (ignored cells are PAD).
  out.predictions = torch::where(out.labels < 0, torch::zeros_like(out.labels), out.labels);
  hrm::ArcVoteResult r = hrm::arc_vote(o.output_dir, out);
  EXPECT_EQ(r.test_inputs, 1);
  EXPECT_DOUBLE_EQ(r.pass_at["pass@1"], 1.0);
  EXPECT_NE(r.submission_json.find("\"cccc\""), std::string::npos);
  // All variants wrong in the same way but one: the majority (wrong) wins pass@1, the right one is second.
  const std::vector<uint8_t> one_cell = encode_arc_grid(ArcGrid{1, 1, {0}});  // colour 0 is fixed by every variant
  const torch::Tensor wrong_row = torch::tensor(std::vector<int32_t>(one_cell.begin(), one_cell.end()), torch::kInt);
  hrm::EvalOutput mixed = out;
  mixed.predictions = out.predictions.clone();
  for (int64_t i = 1; i < n; ++i) mixed.predictions[i] = wrong_row;
  r = hrm::arc_vote(o.output_dir, mixed);
  EXPECT_DOUBLE_EQ(r.pass_at["pass@1"], 0.0);
  EXPECT_DOUBLE_EQ(r.pass_at["pass@2"], 1.0);
}
