#include "hrm/data/build.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <sstream>

#include "hrm/data/arc.h"
#include "hrm/data/maze.h"
#include "hrm/data/sudoku.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::data {
namespace {

std::string summary_line(const DatasetSummary& s, const std::string& dir) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "wrote %s: train %lld examples in %lld groups, test %lld examples in %lld groups, seq_len %lld, "
                "vocab %lld, %.2f s\n",
                dir.c_str(), (long long)s.train_examples, (long long)s.train_groups, (long long)s.test_examples,
                (long long)s.test_groups, (long long)s.seq_len, (long long)s.vocab_size, s.seconds);
  std::string out = buf;
  if (s.skipped) out += "skipped " + std::to_string(s.skipped) + " invalid rows\n";
  return out;
}

// F.csv -> F_test.csv (F -> F_test without the extension).
std::string test_csv_name(const std::string& f) {
  const auto dot = f.rfind(".csv");
  return dot == std::string::npos ? f + "_test" : f.substr(0, dot) + "_test.csv";
}

bool generating(const DatasetRequest& r) { return r.generate > 0 || r.generate_test > 0; }

void require_csvs(const DatasetRequest& r) {
  if (r.train_csv.empty() || r.test_csv.empty())
    throw Error("dataset " + r.kind + ": give --train-csv and --test-csv, or --generate N --generate-test N");
}

std::string build_sudoku(const DatasetRequest& r) {
  const SudokuShape shape = SudokuShape::of(r.sudoku_size);
  std::vector<SudokuRecord> train, test;
  int64_t skipped_train = 0, skipped_test = 0;
  std::string out;
  if (generating(r)) {
    SudokuGenerateOptions g;
    g.min_rating = r.min_rating;
    g.min_blanks = r.min_blanks;
    g.max_blanks = r.max_blanks < 0 ? r.min_blanks : r.max_blanks;
    g.seed = r.seed;
    generate_sudoku_split(shape, r.generate, r.generate_test, g, &train, &test);
    if (!r.export_csv.empty()) {
      ensure_parent_dir(r.export_csv);
      write_sudoku_csv(r.export_csv, train);
      write_sudoku_csv(test_csv_name(r.export_csv), test);
    }
    int64_t sum = 0;
    for (const auto& x : train) sum += x.rating;
    for (const auto& x : test) sum += x.rating;
    char buf[128];
    std::snprintf(buf, sizeof buf, "generated %zu + %zu puzzles, mean rating %.2f guesses\n", train.size(), test.size(),
                  static_cast<double>(sum) / std::max<size_t>(1, train.size() + test.size()));
    out += buf;
  } else {
    require_csvs(r);
    train = read_sudoku_csv(r.train_csv, shape, r.skip_invalid, &skipped_train);
    test = read_sudoku_csv(r.test_csv, shape, r.skip_invalid, &skipped_test);
  }
  SudokuBuildOptions o;
  o.output_dir = r.output_dir;
  o.num_aug = r.num_aug;
  o.subsample_size = r.subsample;
  o.min_difficulty = r.min_difficulty;
  o.seed = r.seed;
  o.overwrite = r.overwrite;
  DatasetSummary s = build_sudoku_dataset(shape, std::move(train), std::move(test), o);
  s.skipped = skipped_train + skipped_test;
  return out + summary_line(s, r.output_dir);
}

std::string build_maze(const DatasetRequest& r) {
  std::vector<Maze> train, test;
  int64_t skipped_train = 0, skipped_test = 0;
  if (generating(r)) {
    generate_maze_split(r.maze_size, r.generate, r.generate_test, r.min_path_length, r.seed, &train, &test);
    if (!r.export_csv.empty()) {
      ensure_parent_dir(r.export_csv);
      write_maze_csv(r.export_csv, train);
      write_maze_csv(test_csv_name(r.export_csv), test);
    }
  } else {
    require_csvs(r);
    train = read_maze_csv(r.train_csv, r.skip_invalid, &skipped_train);
    test = read_maze_csv(r.test_csv, r.skip_invalid, &skipped_test);
  }
  MazeBuildOptions o;
  o.output_dir = r.output_dir;
  o.augment = r.maze_aug;
  o.seed = r.seed;
  o.overwrite = r.overwrite;
  DatasetSummary s = build_maze_dataset(train, test, o);
  s.skipped = skipped_train + skipped_test;
  return summary_line(s, r.output_dir);
}

std::string build_arc(const DatasetRequest& r) {
  std::vector<ArcTask> tasks;
  auto append = [&](std::vector<ArcTask> more) {
    tasks.insert(tasks.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  };
  if (!r.kaggle_prefix.empty()) {
    std::stringstream ss(r.kaggle_sets);
    std::string set;
    while (std::getline(ss, set, ',')) append(read_arc_kaggle(r.kaggle_prefix, set));
  }
  for (const auto& dir : r.arc_dirs) append(read_arc_folder(dir));
  if (tasks.empty()) throw Error("dataset arc: give --arc-dir DIR or --kaggle-prefix P");
  ArcBuildOptions o;
  o.output_dir = r.output_dir;
  o.test_set = r.test_set;
  o.num_aug = r.arc_num_aug;
  o.seed = r.arc_seed;
  o.overwrite = r.overwrite;
  const ArcSummary s = build_arc_dataset(tasks, o);
  std::string out;
  for (const auto& w : s.warnings) out += "warning: " + w + "\n";
  out += std::to_string(s.tasks) + " tasks (" + std::to_string(s.test_tasks) + " in the test set), " +
         std::to_string(s.identifiers) + " puzzle identifiers\n";
  return out + summary_line(s, r.output_dir);
}

// Counts a negative value cannot mean: checked before anything is generated or written (a negative --num-aug used to
// write a training split of 0 examples without a word).
void check_counts(const DatasetRequest& r) {
  const auto at_least = [&](const char* flag, int64_t value, int64_t minimum, const char* meaning) {
    if (value < minimum)
      throw Error("dataset " + r.kind + ": " + flag + " must be " + meaning + " (got " + std::to_string(value) + ")");
  };
  at_least("--generate", r.generate, 0, ">= 0");
  at_least("--generate-test", r.generate_test, 0, ">= 0");
  if (r.kind == "sudoku") {
    at_least("--num-aug", r.num_aug, 0, ">= 0");
    at_least("--min-rating", r.min_rating, 0, ">= 0");
    at_least("--min-difficulty", r.min_difficulty, -1, ">= 0 (or -1: all rows)");
    at_least("--min-blanks", r.min_blanks, -1, ">= 0 (or -1: minimal puzzles)");
    at_least("--max-blanks", r.max_blanks, -1, ">= 0 (or -1: --min-blanks)");
    if (r.subsample != -1) at_least("--subsample-size", r.subsample, 1, ">= 1 (or -1: keep all)");
  }
  if (r.kind == "maze") at_least("--min-path-length", r.min_path_length, 0, ">= 0");
  if (r.kind == "arc") at_least("--num-aug", r.arc_num_aug, 0, ">= 0");
}

}  // namespace

std::string build_dataset(const DatasetRequest& r) {
  check_counts(r);
  if (r.kind == "sudoku") return build_sudoku(r);
  if (r.kind == "maze") return build_maze(r);
  if (r.kind == "arc") return build_arc(r);
  throw Error("dataset: unknown kind '" + r.kind + "' (expected sudoku, maze or arc)");
}

}  // namespace hrm::data
