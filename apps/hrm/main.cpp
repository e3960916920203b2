// hrm: command-line front end. Subcommands parse flags and call the library.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "hrm/hrm.h"

namespace {

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

void print_summary(const hrm::data::DatasetSummary& s, const std::string& dir) {
  std::printf("wrote %s: train %lld examples in %lld groups, test %lld examples in %lld groups, seq_len %lld, "
              "vocab %lld, %.2f s\n",
              dir.c_str(), (long long)s.train_examples, (long long)s.train_groups, (long long)s.test_examples,
              (long long)s.test_groups, (long long)s.seq_len, (long long)s.vocab_size, s.seconds);
  if (s.skipped) std::printf("skipped %lld invalid rows\n", (long long)s.skipped);
}

std::string test_csv_name(const std::string& f) {
  const auto dot = f.rfind(".csv");
  return dot == std::string::npos ? f + "_test" : f.substr(0, dot) + "_test.csv";
}

template <typename Flags>
int run_dataset(const std::string& kind, const Flags& df) {
  using namespace hrm::data;
  if (kind == "sudoku") {
    const SudokuShape shape = SudokuShape::of(df.size);
    std::vector<SudokuRecord> train, test;
    int64_t skipped_train = 0, skipped_test = 0;
    if (df.generate > 0 || df.generate_test > 0) {
      SudokuGenerateOptions g;
      g.min_rating = df.min_rating;
      g.min_blanks = df.min_blanks;
      g.max_blanks = df.max_blanks < 0 ? df.min_blanks : df.max_blanks;
      g.seed = df.seed;
      generate_sudoku_split(shape, df.generate, df.generate_test, g, &train, &test);
      if (!df.export_csv.empty()) {
        write_sudoku_csv(df.export_csv, train);
        write_sudoku_csv(test_csv_name(df.export_csv), test);
      }
      int64_t sum = 0;
      for (const auto& r : train) sum += r.rating;
      for (const auto& r : test) sum += r.rating;
      std::printf("generated %zu + %zu puzzles, mean rating %.2f guesses\n", train.size(), test.size(),
                  static_cast<double>(sum) / std::max<size_t>(1, train.size() + test.size()));
    } else {
      if (df.train_csv.empty() || df.test_csv.empty())
        throw hrm::Error("dataset sudoku: give --train-csv and --test-csv, or --generate N --generate-test N");
      train = read_sudoku_csv(df.train_csv, shape, df.skip_invalid, &skipped_train);
      test = read_sudoku_csv(df.test_csv, shape, df.skip_invalid, &skipped_test);
    }
    SudokuBuildOptions o;
    o.output_dir = df.output_dir;
    o.num_aug = df.num_aug;
    o.subsample_size = df.subsample;
    o.min_difficulty = df.min_difficulty;
    o.seed = df.seed;
    o.overwrite = df.overwrite;
    DatasetSummary s = build_sudoku_dataset(shape, std::move(train), std::move(test), o);
    s.skipped = skipped_train + skipped_test;
    print_summary(s, df.output_dir);
    return 0;
  }
  if (kind == "maze") {
    std::vector<Maze> train, test;
    int64_t skipped_train = 0, skipped_test = 0;
    if (df.generate > 0 || df.generate_test > 0) {
      generate_maze_split(df.size == 9 ? 30 : df.size, df.generate, df.generate_test, df.min_path_length, df.seed,
                          &train, &test);
      if (!df.export_csv.empty()) {
        write_maze_csv(df.export_csv, train);
        write_maze_csv(test_csv_name(df.export_csv), test);
      }
    } else {
      if (df.train_csv.empty() || df.test_csv.empty())
        throw hrm::Error("dataset maze: give --train-csv and --test-csv, or --generate N --generate-test N");
      train = read_maze_csv(df.train_csv, df.skip_invalid, &skipped_train);
      test = read_maze_csv(df.test_csv, df.skip_invalid, &skipped_test);
    }
    MazeBuildOptions o;
    o.output_dir = df.output_dir;
    o.augment = df.aug;
    o.seed = df.seed;
    o.overwrite = df.overwrite;
    DatasetSummary s = build_maze_dataset(train, test, o);
    s.skipped = skipped_train + skipped_test;
    print_summary(s, df.output_dir);
    return 0;
  }
  std::vector<ArcTask> tasks;
  if (!df.kaggle_prefix.empty()) {
    std::stringstream ss(df.sets);
    std::string set;
    while (std::getline(ss, set, ',')) {
      auto more = read_arc_kaggle(df.kaggle_prefix, set);
      tasks.insert(tasks.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    }
  }
  for (const auto& dir : df.arc_dirs) {
    auto more = read_arc_folder(dir);
    tasks.insert(tasks.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  if (tasks.empty()) throw hrm::Error("dataset arc: give --arc-dir DIR or --kaggle-prefix P");
  ArcBuildOptions o;
  o.output_dir = df.output_dir;
  o.test_set = df.test_set;
  o.num_aug = df.arc_num_aug;
  o.seed = df.arc_seed;
  o.overwrite = df.overwrite;
  const ArcSummary s = build_arc_dataset(tasks, o);
  for (const auto& w : s.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::printf("%lld tasks (%lld in the test set), %lld puzzle identifiers\n", (long long)s.tasks,
              (long long)s.test_tasks, (long long)s.identifiers);
  print_summary(s, df.output_dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hrm: Hierarchical Reasoning Models in C++ (LibTorch)"};
  app.set_version_flag("--version", std::string(HRM_VERSION_STRING));
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "intra-op CPU threads (default: all cores)");

  // verify-reference
  auto* verify = app.add_subcommand("verify-reference",
                                    "replay a reference fixture of the published implementation and compare "
                                    "every saved tensor (exit 0 only if all match)");
  std::string fixture_dir;
  hrm::VerifyOptions vopt;
  bool no_free_running = false;
  verify->add_option("DIR", fixture_dir, "fixture folder (manifest.json, params/, steps/, eval/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  verify->add_option("--rtol", vopt.rtol, "relative tolerance")->capture_default_str();
  verify->add_option("--atol", vopt.atol, "absolute tolerance")->capture_default_str();
  verify->add_flag("--no-free-running", no_free_running, "skip the free-running drift report");

  // bench
  auto* bench = app.add_subcommand("bench", "training-step throughput and peak memory on random data");
  std::string preset = "paper";
  hrm::BenchOptions bopt;
  std::vector<std::string> overrides;
  bench->add_option("--preset", preset, "paper | small")->capture_default_str();
  bench->add_option("--batch", bopt.batch_size, "batch size")->capture_default_str();
  bench->add_option("--steps", bopt.steps, "timed steps")->capture_default_str();
  bench->add_option("--warmup", bopt.warmup, "untimed steps first")->capture_default_str();
  bench->add_option("--device", bopt.device, "cpu | cuda[:N]")->capture_default_str();
  bench->add_option("--profile", bopt.profile_path, "write a chrome://tracing profile of the timed steps");
  bench->add_option("overrides", overrides, "model config overrides key=value (e.g. H_cycles=4)");

  // dataset
  auto* dataset = app.add_subcommand("dataset", "build puzzle datasets in the published format");
  dataset->require_subcommand(1);
  struct DatasetFlags {
    std::string train_csv, test_csv, output_dir, export_csv;
    int64_t num_aug = 0, subsample = -1, min_difficulty = -1, generate = 0, generate_test = 0, min_rating = 0;
    int size = 9;
    int64_t min_path_length = 110;
    uint64_t seed = 0;
    bool aug = false, skip_invalid = false, overwrite = false;
    std::vector<std::string> arc_dirs;
    std::string kaggle_prefix, sets = "training,evaluation,concept", test_set = "evaluation";
    int64_t arc_num_aug = 1000, min_blanks = -1, max_blanks = -1;
    uint64_t arc_seed = 42;
  } df;
  auto* ds_sudoku = dataset->add_subcommand("sudoku", "Sudoku: import the published CSV or generate offline");
  ds_sudoku->add_option("--train-csv", df.train_csv, "training CSV (source,question,answer,rating)");
  ds_sudoku->add_option("--test-csv", df.test_csv, "test CSV");
  ds_sudoku->add_option("--generate", df.generate, "generate this many training puzzles instead of importing");
  ds_sudoku->add_option("--generate-test", df.generate_test, "generate this many test puzzles");
  ds_sudoku->add_option("--min-rating", df.min_rating, "keep generated puzzles rated (solver guesses) >= this");
  ds_sudoku->add_option("--size", df.size, "board size 4, 6 or 9")->capture_default_str();
  ds_sudoku->add_option("--num-aug", df.num_aug, "augmented copies per training puzzle")->capture_default_str();
  ds_sudoku->add_option("--subsample-size", df.subsample, "keep this many training puzzles (random)");
  ds_sudoku->add_option("--min-difficulty", df.min_difficulty, "keep CSV rows rated >= this");
  ds_sudoku->add_option("--export-csv", df.export_csv,
                        "also write the generated puzzles as CSV: F (train) and F with _test before .csv (test)");
  auto* ds_maze = dataset->add_subcommand("maze", "Maze: import the published CSV or generate offline");
  ds_maze->add_option("--train-csv", df.train_csv, "training CSV");
  ds_maze->add_option("--test-csv", df.test_csv, "test CSV");
  ds_maze->add_flag("--aug", df.aug, "8 dihedral copies of each training maze");
  ds_maze->add_option("--generate", df.generate, "generate this many training mazes");
  ds_maze->add_option("--generate-test", df.generate_test, "generate this many test mazes");
  ds_maze->add_option("--size", df.size, "maze side (generation)");
  ds_maze->add_option("--min-path-length", df.min_path_length, "keep mazes whose shortest path is longer")
      ->capture_default_str();
  ds_maze->add_option("--export-csv", df.export_csv, "also write the generated mazes as CSV (F and F_test)");
  auto* ds_arc = dataset->add_subcommand("arc", "ARC: per-task folders or Kaggle-style combined files");
  ds_arc->add_option("--arc-dir", df.arc_dirs, "folder with training/ and evaluation/ task files (repeatable)");
  ds_arc->add_option("--kaggle-prefix", df.kaggle_prefix, "PREFIX of PREFIX_<set>_challenges/solutions.json");
  ds_arc->add_option("--sets", df.sets, "Kaggle sets to load, comma-separated")->capture_default_str();
  ds_arc->add_option("--test-set", df.test_set, "set whose test pairs form the test split")->capture_default_str();
  ds_arc->add_option("--num-aug", df.arc_num_aug, "augmented variants per task")->capture_default_str();
  ds_arc->add_option("--seed", df.arc_seed, "random seed")->capture_default_str();
  ds_sudoku->add_option("--min-blanks", df.min_blanks, "generated puzzles: stop removing clues at a random number "
                                                       "of blanks in [min-blanks, max-blanks] (default: minimal)");
  ds_sudoku->add_option("--max-blanks", df.max_blanks, "see --min-blanks");
  for (auto* sub : {ds_sudoku, ds_maze, ds_arc}) {
    sub->add_option("--output-dir", df.output_dir, "dataset folder to create")->required();
    if (sub != ds_arc) sub->add_option("--seed", df.seed, "random seed")->capture_default_str();
    sub->add_flag("--skip-invalid", df.skip_invalid, "skip (and count) invalid CSV rows instead of failing");
    sub->add_flag("--overwrite", df.overwrite, "replace an existing output folder");
  }

  CLI11_PARSE(app, argc, argv);
  set_threads(threads);

  try {
    if (*verify) {
      vopt.free_running = !no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(fixture_dir, vopt, std::cout);
      return r.ok ? 0 : 1;
    }
    if (*dataset) return run_dataset(ds_sudoku->parsed() ? "sudoku" : ds_maze->parsed() ? "maze" : "arc", df);
    if (*bench) {
      hrm::ModelConfig config = hrm::bench_preset(preset);
      for (const auto& kv : overrides) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos) throw hrm::Error("bench: expected key=value, got '" + kv + "'");
        config.set(kv.substr(0, eq), kv.substr(eq + 1), "command line");
      }
      config.validate("command line");
      const hrm::BenchResult r = hrm::benchmark_training_step(config, bopt);
      std::printf("bench %s: hidden %lld, H/L layers %lld/%lld, H/L cycles %lld/%lld, seq %lld, batch %lld, %s, "
                  "%d threads, %.2fM params\n",
                  preset.c_str(), (long long)config.hidden_size, (long long)config.H_layers,
                  (long long)config.L_layers, (long long)config.H_cycles, (long long)config.L_cycles,
                  (long long)config.seq_len, (long long)bopt.batch_size, config.forward_dtype.c_str(),
                  torch::get_num_threads(), r.parameters / 1e6);
      std::printf("  %.1f samples/s (median step %.1f ms, best %.1f ms over %lld steps), peak CPU tensor memory "
                  "%.1f MiB\n",
                  r.samples_per_second, r.median_step_ms, r.min_step_ms, (long long)bopt.steps,
                  r.peak_bytes / 1048576.0);
      return 0;
    }
  } catch (const hrm::Error& e) {
    std::cerr << "hrm: error: " << e.what() << std::endl;
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "hrm: error: " << e.what_without_backtrace() << std::endl;
    return 2;
  }
  return 0;
}
