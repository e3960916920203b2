#include <filesystem>
#include <fstream>

#include "test_util.h"

using namespace hrm::data;
using hrm::test::TempDir;
namespace fs = std::filesystem;

namespace {
// 6 groups; group g has (g % 2) + 1 puzzles; puzzle p has (p % 3) + 1 examples; token = example index % 7 + 1.
std::string make_dataset(const TempDir& dir) {
  const std::string out = dir.file("toy");
  DatasetFolder folder(out);
  DatasetMetadata meta;
  meta.vocab_size = 10;
  meta.num_puzzle_identifiers = 20;
  for (const char* split : {"train", "test"}) {
    SplitBuilder b(4);
    int example = 0, puzzle = 0;
    for (int g = 0; g < 6; ++g) {
      for (int k = 0; k <= g % 2; ++k, ++puzzle) {
        for (int e = 0; e <= puzzle % 3; ++e, ++example) {
          const uint8_t t = static_cast<uint8_t>(example % 7 + 1);
          b.add_example({t, t, t, t}, {t, 0, t, t});  // label 0 = ignored
        }
        b.end_puzzle(puzzle + 1);
      }
      b.end_group();
    }
    b.write(folder.split_dir(split), meta);
  }
  write_json_file(folder.path("identifiers.json"), "[]");
  folder.commit();
  return out;
}
}  // namespace

TEST(Dataset, TestModeReturnsEveryExampleInOrderWithPadding) {
  TempDir dir;
  const std::string path = make_dataset(dir);
  LoaderConfig c{path, "test", 4, true};
  PuzzleDataset ds(c);
  const int64_t n = ds.num_examples();
  const auto batches = ds.iteration_batches(0);
  ASSERT_EQ(static_cast<int64_t>(batches.size()), (n + 3) / 4);
  int64_t seen = 0;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < 4; ++i, ++seen) {
      if (seen < n) {
        EXPECT_EQ(b.batch.inputs[i][0].item<int>(), seen % 7 + 1);
        EXPECT_EQ(b.batch.labels[i][1].item<int>(), -100);  // ignore_label_id -> -100
      } else {
        EXPECT_EQ(b.batch.inputs[i][0].item<int>(), 0);  // pad_id
        EXPECT_EQ(b.batch.labels[i][0].item<int>(), -100);
        EXPECT_EQ(b.batch.puzzle_identifiers[i].item<int>(), 0);  // blank
      }
    }
  }
  EXPECT_EQ(batches.back().effective_size, n - 4 * (static_cast<int64_t>(batches.size()) - 1));
  // Puzzle identifiers follow puzzle_indices.
  EXPECT_EQ(batches[0].batch.puzzle_identifiers[0].item<int>(), 1);
  EXPECT_EQ(batches[0].batch.puzzle_identifiers[1].item<int>(), 2);
}

TEST(Dataset, TrainModeIsSeededShardedAndDropsTheLastBatch) {
  TempDir dir;
  const std::string path = make_dataset(dir);
  LoaderConfig c{path, "train", 4, false, 3, 11};
  PuzzleDataset a(c), b(c);
  const auto x = a.iteration_batches(5), y = b.iteration_batches(5), z = a.iteration_batches(6);
  ASSERT_EQ(x.size(), y.size());
  ASSERT_FALSE(x.empty());
  bool differs = false;
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_TRUE(torch::equal(x[i].batch.inputs, y[i].batch.inputs));
    EXPECT_EQ(x[i].batch.size(), 4);
    if (i < z.size() && !torch::equal(x[i].batch.inputs, z[i].batch.inputs)) differs = true;
  }
  EXPECT_TRUE(differs);
  // Each group contributes one puzzle per epoch: at most 3 epochs * 6 groups * 3 examples; full batches only.
  EXPECT_LE(static_cast<int64_t>(x.size()) * 4, 3 * 6 * 3);
  // Two ranks see the two halves of the same global batches.
  LoaderConfig r0 = c, r1 = c;
  r0.world_size = r1.world_size = 2;
  r1.rank = 1;
  const auto h0 = PuzzleDataset(r0).iteration_batches(5), h1 = PuzzleDataset(r1).iteration_batches(5);
  ASSERT_EQ(h0.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_TRUE(torch::equal(torch::cat({h0[i].batch.inputs, h1[i].batch.inputs}), x[i].batch.inputs));
    EXPECT_EQ(h0[i].batch.size(), 2);
  }
}

TEST(Dataset, BackgroundLoaderYieldsTheSameBatches) {
  TempDir dir;
  const std::string path = make_dataset(dir);
  LoaderConfig c{path, "train", 4, false, 2, 3};
  auto ds = std::make_shared<PuzzleDataset>(c);
  const auto first = ds->iteration_batches(0), second = ds->iteration_batches(1);
  BackgroundLoader loader(ds, 0, 2);
  for (const auto* expected : {&first, &second})
    for (const auto& e : *expected) {
      int64_t it = -1;
      auto b = loader.next(&it);
      ASSERT_TRUE(b.has_value());
      EXPECT_EQ(it, expected == &first ? 0 : 1);
      EXPECT_TRUE(torch::equal(b->batch.inputs, e.batch.inputs));
    }
  LoaderConfig t{path, "test", 4, true};
  BackgroundLoader test_loader(std::make_shared<PuzzleDataset>(t), 0);
  int64_t n = 0;
  while (test_loader.next()) ++n;
  EXPECT_EQ(n, (PuzzleDataset(t).num_examples() + 3) / 4);
}

TEST(Dataset, CorruptDatasetsNameTheFileAndProblem) {
  TempDir dir;
  const std::string path = make_dataset(dir);
  auto error = [&]() {
    try {
      PuzzleDataset(LoaderConfig{path, "train", 4});
    } catch (const hrm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string train = path + "/train/";
  // Token outside the vocabulary.
  torch::Tensor inputs = hrm::npy::load(train + "all__inputs.npy");
  inputs[2][1] = 50;
  hrm::npy::save(train + "all__inputs.npy", inputs);
  EXPECT_NE(error().find("all__inputs.npy: example 2 has token 50"), std::string::npos) << error();
  inputs[2][1] = 1;
  hrm::npy::save(train + "all__inputs.npy", inputs);
  EXPECT_EQ(error(), "");
  // Offsets that do not cover the examples.
  torch::Tensor pi = hrm::npy::load(train + "all__puzzle_indices.npy");
  pi[-1] = 3;
  hrm::npy::save(train + "all__puzzle_indices.npy", pi);
  EXPECT_NE(error().find("all__puzzle_indices.npy: offsets must end at"), std::string::npos) << error();
  pi = pi.clone();
  // Truncated file.
  const std::string bytes = hrm::read_file(train + "all__labels.npy");
  std::ofstream(train + "all__labels.npy", std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  EXPECT_NE(error().find("all__labels.npy"), std::string::npos) << error();
  // Malformed metadata.
  std::ofstream(train + "dataset.json") << "{\"pad_id\": 0";
  EXPECT_NE(error().find("dataset.json: invalid JSON"), std::string::npos) << error();
  EXPECT_NE(
      [&] {
        try {
          PuzzleDataset(LoaderConfig{path, "nope", 4});
        } catch (const hrm::Error& e) {
          return std::string(e.what());
        }
        return std::string();
      }()
          .find("no such dataset split folder"),
      std::string::npos);
}

TEST(Dataset, InterruptedBuildLeavesNothing) {
  TempDir dir;
  {
    DatasetFolder folder(dir.file("half"));
    SplitBuilder b(2);
    b.add_example({1, 1}, {1, 1});
    b.end_puzzle(0);
    b.end_group();
    b.write(folder.split_dir("train"), DatasetMetadata{});
    // no commit: as if the build stopped here
  }
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.str()), {}), 0);
  fs::create_directories(dir.file("full"));
  std::ofstream(dir.file("full/x")) << "x";
  EXPECT_THROW(DatasetFolder(dir.file("full")), hrm::Error);
}

// Counts a negative value cannot mean are refused by name before anything is generated or written.
TEST(Dataset, NegativeCountsAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const auto message = [&](DatasetRequest r) -> std::string {
    r.output_dir = dir.file("out");
    try {
      return build_dataset(r);
    } catch (const hrm::Error& e) {
      return e.what();
    }
  };
  DatasetRequest sudoku;
  sudoku.kind = "sudoku";
  sudoku.sudoku_size = 4;
  sudoku.generate = 8;
  sudoku.generate_test = 4;
  DatasetRequest r = sudoku;
  r.num_aug = -2;
  EXPECT_EQ(message(r), "dataset sudoku: --num-aug must be >= 0 (got -2)");
  r = sudoku;
  r.generate = -5;
  EXPECT_EQ(message(r), "dataset sudoku: --generate must be >= 0 (got -5)");
  r = sudoku;
  r.subsample = 0;
  EXPECT_EQ(message(r), "dataset sudoku: --subsample-size must be >= 1 (or -1: keep all) (got 0)");
  DatasetRequest arc;
  arc.kind = "arc";
  arc.arc_dirs = {dir.file("none")};
  arc.arc_num_aug = -1;
  EXPECT_EQ(message(arc), "dataset arc: --num-aug must be >= 0 (got -1)");
  EXPECT_FALSE(fs::exists(dir.file("out")));
  // the same request with valid counts builds
  const std::string built = message(sudoku);
  EXPECT_EQ(built.rfind("generated 8 + 4 puzzles", 0), 0u) << built;
  EXPECT_TRUE(fs::exists(dir.file("out/train")));
}
