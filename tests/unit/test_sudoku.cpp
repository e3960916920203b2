#include <array>
#include <cstdio>
#include <fstream>
#include <memory>

#include "test_util.h"

using namespace hrm::data;
using hrm::test::TempDir;

namespace {
std::string run(const std::string& cmd, const std::string& input = "") {
  TempDir dir;
  const std::string in = dir.file("in.txt");
  std::ofstream(in) << input;
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen((cmd + " < " + in).c_str(), "r"), pclose);
  if (!pipe) return out;
  std::array<char, 4096> buf{};
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  return out;
}
bool have_qqwing() { return std::system("qqwing --version > /dev/null 2>&1") == 0; }
std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string l;
  while (std::getline(ss, l))
    if (!l.empty()) out.push_back(l);
  return out;
}
}  // namespace

TEST(Sudoku, SolverAgreesWithQqwingOnItsPuzzles) {
  if (!have_qqwing()) GTEST_SKIP() << "qqwing not installed";
  const auto out = lines(run("qqwing --generate 20 --difficulty expert --one-line --solution"));
  ASSERT_EQ(out.size(), 40u);
  const SudokuShape shape = SudokuShape::of(9);
  for (size_t i = 0; i < out.size(); i += 2) {
    const SudokuGrid puzzle = parse_sudoku(shape, out[i], "qqwing"),
                     solution = parse_sudoku(shape, out[i + 1], "qqwing");
    const SolveResult r = solve_sudoku(shape, puzzle, 2);
    EXPECT_EQ(r.solutions, 1) << out[i];
    EXPECT_EQ(r.solution, solution) << out[i];
    EXPECT_TRUE(is_valid_sudoku_solution(shape, puzzle, r.solution));
  }
}

TEST(Sudoku, QqwingConfirmsOurGeneratedPuzzlesAreUnique) {
  if (!have_qqwing()) GTEST_SKIP() << "qqwing not installed";
  const SudokuShape shape = SudokuShape::of(9);
  std::mt19937_64 rng(7);
  std::string input;
  std::vector<GeneratedSudoku> generated;
  for (int i = 0; i < 10; ++i) {
    generated.push_back(generate_sudoku(shape, rng));
    input += format_sudoku(generated.back().puzzle) + "\n";
  }
  const auto out = lines(run("qqwing --solve --count-solutions --one-line", input));
  int unique = 0;
  std::vector<std::string> solutions;
  for (const auto& l : out) {
    if (l.find("The solution to the puzzle is unique") != std::string::npos)
      ++unique;
    else if (l.size() == 81)
      solutions.push_back(l);
  }
  EXPECT_EQ(unique, 10);
  ASSERT_EQ(solutions.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(solutions[i], format_sudoku(generated[i].solution));
}

TEST(Sudoku, CountsSolutionsAndDetectsContradictions) {
  const SudokuShape shape = SudokuShape::of(4);
  EXPECT_EQ(solve_sudoku(shape, SudokuGrid(16, 0), 1000).solutions, 288);  // all 4x4 grids
  SudokuGrid bad(16, 0);
  bad[0] = bad[1] = 1;
  EXPECT_EQ(solve_sudoku(shape, bad, 2).solutions, 0);
}

TEST(Sudoku, GeneratorMakesUniqueMinimalPuzzlesForEverySize) {
  for (int size : {4, 6, 9}) {
    const SudokuShape shape = SudokuShape::of(size);
    std::mt19937_64 rng(size);
    for (int i = 0; i < 5; ++i) {
      const GeneratedSudoku g = generate_sudoku(shape, rng);
      EXPECT_TRUE(is_valid_sudoku_solution(shape, SudokuGrid(g.solution.size(), 0), g.solution));
      const SolveResult r = solve_sudoku(shape, g.puzzle, 2);
      EXPECT_EQ(r.solutions, 1);
      EXPECT_EQ(r.solution, g.solution);
      // Minimal: removing any clue breaks uniqueness.
      for (int c = 0; c < shape.cells(); ++c) {
        if (!g.puzzle[c]) continue;
        SudokuGrid less = g.puzzle;
        less[c] = 0;
        EXPECT_GT(solve_sudoku(shape, less, 2).solutions, 1) << "size " << size;
      }
    }
  }
}

TEST(Sudoku, EveryAugmentationIsAValidPuzzleSolutionPair) {
  for (int size : {4, 6, 9}) {
    const SudokuShape shape = SudokuShape::of(size);
    std::mt19937_64 rng(100 + size);
    const GeneratedSudoku g = generate_sudoku(shape, rng);
    bool transposed = false;
    for (int i = 0; i < 200; ++i) {
      const SudokuTransform t = SudokuTransform::random(shape, rng);
      transposed |= t.transpose;
      const SudokuGrid q = t.apply(shape, g.puzzle), s = t.apply(shape, g.solution);
      ASSERT_TRUE(is_valid_sudoku_solution(shape, q, s)) << "size " << size;
      EXPECT_EQ(solve_sudoku(shape, q, 2).solutions, 1);
      if (size <= 6) EXPECT_EQ(sudoku_canonical_key(shape, q), sudoku_canonical_key(shape, g.puzzle));  // exact keys
    }
    EXPECT_EQ(transposed, size != 6);  // 2x3 boxes cannot be transposed
  }
}

TEST(Sudoku, GeneratedSplitKeepsTestPuzzlesOutOfTrain) {
  const SudokuShape shape = SudokuShape::of(4);
  std::vector<SudokuRecord> train, test;
  SudokuGenerateOptions o;
  o.min_blanks = 6;
  o.max_blanks = 10;
  o.progress = false;
  generate_sudoku_split(shape, 200, 50, o, &train, &test);
  std::set<std::string> keys;
  for (const auto& r : train) keys.insert(sudoku_canonical_key(shape, r.question));
  EXPECT_EQ(keys.size(), 200u);
  for (const auto& r : test) EXPECT_TRUE(keys.insert(sudoku_canonical_key(shape, r.question)).second);
  SudokuGenerateOptions minimal;
  minimal.progress = false;
  std::vector<SudokuRecord> a, b;
  EXPECT_THROW(generate_sudoku_split(shape, 1000, 0, minimal, &a, &b), hrm::Error);  // few minimal 4x4 puzzles
}

TEST(Sudoku, CsvImportAndErrors) {
  const SudokuShape shape = SudokuShape::of(9);
  const std::string sample = hrm::test::shared_dir() + "/data/sudoku/qqwing_expert_sample.csv";
  if (std::filesystem::exists(sample)) {
    const auto records = read_sudoku_csv(sample, shape, false);
    EXPECT_EQ(records.size(), 300u);
    for (const auto& r : records) EXPECT_EQ(solve_sudoku(shape, r.question, 2).solution, r.answer);
  }
  TempDir dir;
  const std::string solved = format_sudoku(random_full_sudoku(shape, *std::make_unique<std::mt19937_64>(1)));
  auto write = [&](const std::string& name, const std::string& body) {
    std::ofstream(dir.file(name)) << body;
    return dir.file(name);
  };
  auto error = [&](const std::string& path) {
    try {
      read_sudoku_csv(path, shape, false);
    } catch (const hrm::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(write("h.csv", "a,b,c\n")).find("header"), std::string::npos);
  EXPECT_NE(error(write("len.csv", "source,question,answer,rating\nx,123,456,1\n")).find("expected 81 characters"),
            std::string::npos);
  EXPECT_NE(error(write("len2.csv", "source,question,answer,rating\nx,123," + solved + ",1\n")).find("len2.csv:2"),
            std::string::npos);
  std::string q = solved;
  q[0] = '.';
  std::string contradiction = solved;
  contradiction[1] = contradiction[0];  // breaks a row
  EXPECT_NE(error(write("bad.csv", "source,question,answer,rating\nx," + q + "," + contradiction + ",1\n"))
                .find("not a valid solution"),
            std::string::npos);
  std::string wrong_clue = q;
  wrong_clue[5] = wrong_clue[5] == '9' ? '1' : static_cast<char>(wrong_clue[5] + 1);
  EXPECT_NE(error(write("clue.csv", "source,question,answer,rating\nx," + wrong_clue + "," + solved + ",1\n"))
                .find("clue.csv:2: the answer is not a valid solution"),
            std::string::npos);
  EXPECT_NE(error(write("chr.csv", "source,question,answer,rating\nx," + std::string(80, '.') + "x," + solved + ",1\n"))
                .find("invalid character"),
            std::string::npos);
  // Found by fuzzing (scripts/fuzz.sh puzzle_csv): a rating beyond int64 was converted with undefined behaviour.
  for (const char* rating : {"5.32897e+26", "nan", "-inf", "1e19"})
    EXPECT_NE(error(write("rating.csv", "source,question,answer,rating\nx," + q + "," + solved + "," + rating + "\n"))
                  .find("rating.csv:2: rating '" + std::string(rating) + "' is not a number within +-9e18"),
              std::string::npos)
        << rating;
  int64_t skipped = 0;
  const auto kept = read_sudoku_csv(write("mix.csv", "source,question,answer,rating\nx," + q + "," + solved + ",3\ny," +
                                                         q + "," + contradiction + ",1\n"),
                                    shape, true, &skipped);
  EXPECT_EQ(kept.size(), 1u);
  EXPECT_EQ(skipped, 1);
}

TEST(Sudoku, BuildsTheDatasetAndTheLoaderReadsIt) {
  TempDir dir;
  const SudokuShape shape = SudokuShape::of(9);
  std::vector<SudokuRecord> train, test;
  SudokuGenerateOptions g;
  g.progress = false;
  generate_sudoku_split(shape, 20, 8, g, &train, &test);
  SudokuBuildOptions o;
  o.output_dir = dir.file("sudoku");
  o.num_aug = 3;
  const DatasetSummary s = build_sudoku_dataset(shape, train, test, o);
  EXPECT_EQ(s.train_examples, 80);
  EXPECT_EQ(s.train_groups, 20);
  EXPECT_EQ(s.test_examples, 8);
  LoaderConfig lc;
  lc.dataset_path = o.output_dir;
  lc.split = "train";
  lc.global_batch_size = 5;
  PuzzleDataset ds(lc);
  EXPECT_EQ(ds.metadata().vocab_size, 11);
  const auto batches = ds.iteration_batches(0);
  EXPECT_EQ(batches.size(), 4u);  // 20 groups, one puzzle each per epoch, batch 5
  for (const auto& b : batches) {
    for (int64_t i = 0; i < 5; ++i) {
      SudokuGrid q(81), a(81);
      for (int c = 0; c < 81; ++c) {
        q[c] = static_cast<uint8_t>(b.batch.inputs[i][c].item<int>() - 1);
        a[c] = static_cast<uint8_t>(b.batch.labels[i][c].item<int>() - 1);
      }
      EXPECT_TRUE(is_valid_sudoku_solution(shape, q, a));  // augmented pairs stay valid
    }
  }
}
