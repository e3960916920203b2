// hrm: command-line front end. Subcommands parse flags and call the library.
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "hrm/hrm.h"

namespace {

void print_summary(const hrm::data::DatasetSummary& s, const std::string& dir) {
  std::printf("wrote %s: train %lld examples in %lld groups, test %lld examples in %lld groups, seq_len %lld, "
              "vocab %lld, %.2f s\n",
              dir.c_str(), (long long)s.train_examples, (long long)s.train_groups, (long long)s.test_examples,
              (long long)s.test_groups, (long long)s.seq_len, (long long)s.vocab_size, s.seconds);
  if (s.skipped) std::printf("skipped %lld invalid rows\n", (long long)s.skipped);
}

void ensure_parent(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
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
        ensure_parent(df.export_csv);
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
      generate_maze_split(df.maze_size, df.generate, df.generate_test, df.min_path_length, df.seed,
                          &train, &test);
      if (!df.export_csv.empty()) {
        ensure_parent(df.export_csv);
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

std::string metrics_json(const std::map<std::string, double>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    out += (out.size() > 1 ? ", \"" : "\"") + k + "\": " + buf;
  }
  return out + "}";
}

int run_eval(const std::string& checkpoint, const std::string& data, const std::string& config,
             const std::vector<std::string>& overrides, const std::string& device, int64_t batch,
             const std::string& json_path, const std::string& predictions, const std::string& submission) {
  hrm::InferenceSetup s = hrm::load_for_inference(checkpoint, data, config, overrides, hrm::resolve_device(device));
  hrm::data::LoaderConfig lc;
  lc.dataset_path = s.data_path;
  lc.split = "test";
  lc.test_mode = true;
  lc.global_batch_size = batch > 0 ? batch : std::min<int64_t>(s.global_batch_size, 1024);
  const hrm::data::PuzzleDataset test(lc);
  hrm::EvalOutput out = hrm::evaluate(s.model, test, s.loss_type);
  const hrm::TaskKind kind = hrm::detect_task_kind(s.data_path, test.metadata());
  hrm::add_checker_metrics(kind, out, &out.metrics);
  if (kind == hrm::TaskKind::Arc) {
    const hrm::ArcVoteResult v = hrm::arc_vote(s.data_path, out);
    for (const auto& [k, x] : v.pass_at) out.metrics[k] = x;
    if (!submission.empty()) hrm::write_file_atomic(submission, v.submission_json);
  }
  if (!predictions.empty() && out.predictions.defined()) {
    hrm::npy::save(predictions + "_predictions.npy", out.predictions);
    hrm::npy::save(predictions + "_q_halt_logits.npy", out.q_halt_logits);
    hrm::npy::save(predictions + "_inputs.npy", out.inputs);
    hrm::npy::save(predictions + "_labels.npy", out.labels);
  }
  std::printf("eval %s on %s (%s, halt_max_steps %lld):\n", checkpoint.c_str(), s.data_path.c_str(),
              hrm::to_string(kind).c_str(), (long long)s.model->config().halt_max_steps);
  for (const auto& [k, v] : out.metrics) std::printf("  %-18s %.6g\n", k.c_str(), v);
  const std::string j = metrics_json(out.metrics);
  if (!json_path.empty()) hrm::write_file_atomic(json_path, j + "\n");
  std::printf("%s\n", j.c_str());
  return 0;
}

const std::string& sudoku_cell(int32_t t) {
  static const std::string cells[] = {"?", ".", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  return cells[std::clamp(t, 0, 10)];
}
const std::string& maze_cell(int32_t t) {
  static const std::string cells[] = {"?", "#", " ", "S", "G", "o"};
  return cells[std::clamp(t, 0, 5)];
}
const std::string& arc_cell(int32_t t) {
  static const std::string cells[] = {" ", "|", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  return cells[std::clamp(t, 0, 11)];
}

void print_grid(const std::vector<int32_t>& tokens, int rows, int cols, const std::string& (*cell)(int32_t)) {
  for (int r = 0; r < rows; ++r) {
    std::string line;
    for (int c = 0; c < cols; ++c) line += cell(tokens[static_cast<size_t>(r * cols + c)]) + (cols <= 12 ? " " : "");
    std::printf("  %s\n", line.c_str());
  }
}

int run_solve(const std::string& checkpoint, const std::string& data, const std::vector<std::string>& overrides,
              const std::string& device, const std::string& sudoku, const std::string& maze, const std::string& arc,
              bool trace, const std::string& html) {
  using namespace hrm::data;
  hrm::InferenceSetup s = hrm::load_for_inference(checkpoint, data, "", overrides, hrm::resolve_device(device));
  struct Job {
    std::string title;
    std::vector<int32_t> tokens;
    int rows, cols;
    int32_t identifier = 0;
    const std::string& (*cell)(int32_t);
    std::function<std::string(const std::vector<int32_t>&)> verdict;
  };
  std::vector<Job> jobs;
  if (!sudoku.empty()) {
    const int side = sudoku.size() == 16 ? 4 : sudoku.size() == 36 ? 6 : 9;
    const SudokuShape shape = SudokuShape::of(side);
    const SudokuGrid q = parse_sudoku(shape, sudoku, "--sudoku");
    Job j{"sudoku " + sudoku, {}, side, side, 0, sudoku_cell, {}};
    for (auto v : q) j.tokens.push_back(v + 1);
    j.verdict = [shape, q](const std::vector<int32_t>& p) {
      SudokuGrid g(p.size());
      for (size_t i = 0; i < p.size(); ++i) g[i] = static_cast<uint8_t>(std::clamp(p[i] - 1, 0, 9));
      const bool ok = is_valid_sudoku_solution(shape, q, g);
      const SolveResult exact = solve_sudoku(shape, q, 2);
      return std::string(ok ? "valid solution (checker accepts it)" : "NOT a valid solution (checker rejects it)") +
             (exact.solutions == 1 && exact.solution == g ? "; equals the unique solution" : "");
    };
    jobs.push_back(j);
  } else if (!maze.empty()) {
    std::string text, line;
    std::ifstream in(maze);
    if (!in) throw hrm::Error("cannot open " + maze);
    int rows = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      text += line;
      ++rows;
    }
    const int side = rows == 1 ? static_cast<int>(std::lround(std::sqrt(text.size()))) : rows;
    if (side * side != static_cast<int>(text.size())) throw hrm::Error(maze + ": the maze must be square");
    Job j{"maze " + maze, {}, side, side, 0, maze_cell, {}};
    for (char ch : text) {
      const auto k = std::string("# SG").find(ch);
      if (k == std::string::npos) throw hrm::Error(maze + ": invalid character '" + std::string(1, ch) + "'");
      j.tokens.push_back(static_cast<int32_t>(k) + 1);
    }
    j.verdict = [side, text](const std::vector<int32_t>& p) {
      std::string g;
      for (auto t : p) g += maze_cell(t);
      return is_valid_maze_solution(side, text, g) ? std::string("optimal path (checker accepts it)")
                                                   : std::string("NOT an optimal S-G path (checker rejects it)");
    };
    jobs.push_back(j);
  } else if (!arc.empty()) {
    const nlohmann::json t = nlohmann::json::parse(hrm::read_file(arc));
    const std::string id = std::filesystem::path(arc).stem().string();
    int32_t identifier = 0;
    const nlohmann::json ids = nlohmann::json::parse(hrm::read_file(s.data_path + "/identifiers.json"));
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] == id) identifier = static_cast<int32_t>(i);
    if (!identifier) std::printf("note: task %s has no puzzle identifier in %s: using the blank one\n", id.c_str(),
                                 s.data_path.c_str());
    for (size_t k = 0; k < t.at("test").size(); ++k) {
      const ArcGrid in = parse_arc_grid(t["test"][k]["input"].dump(), arc + ": test input");
      Job j{"arc " + id + " test " + std::to_string(k), {}, kArcMaxSize, kArcMaxSize, identifier, arc_cell, {}};
      for (auto v : encode_arc_grid(in)) j.tokens.push_back(v);
      std::optional<ArcGrid> truth;
      if (t["test"][k].contains("output")) truth = parse_arc_grid(t["test"][k]["output"].dump(), arc + ": test output");
      j.verdict = [truth](const std::vector<int32_t>& p) {
        std::vector<uint8_t> u(p.begin(), p.end());
        const ArcGrid g = crop_arc_grid(u);
        std::string v = "predicted grid " + std::to_string(g.rows) + "x" + std::to_string(g.cols);
        if (truth) v += *truth == g ? ", equals the expected output" : ", differs from the expected output";
        return v;
      };
      jobs.push_back(j);
    }
  } else {
    throw hrm::Error("solve: give --sudoku, --maze or --arc");
  }
  std::string page;
  for (const auto& j : jobs) {
    const hrm::SolveTrace tr = hrm::solve_with_trace(s.model, j.tokens, j.identifier);
    std::printf("%s\n", j.title.c_str());
    std::printf("input:\n");
    print_grid(j.tokens, j.rows, j.cols, j.cell);
    if (trace)
      for (size_t k = 0; k < tr.segments.size(); ++k) {
        std::printf("segment %zu (q_halt %.3f, q_continue %.3f)%s:\n", k + 1, tr.segments[k].q_halt,
                    tr.segments[k].q_continue, static_cast<int64_t>(k + 1) == tr.halt_segment ? " <- halts" : "");
        print_grid(tr.segments[k].prediction, j.rows, j.cols, j.cell);
      }
    std::printf("answer after %lld of %zu segments (%s):\n", (long long)tr.halt_segment, tr.segments.size(),
                tr.q_halted ? "the Q head halts there" : "halt_max_steps reached");
    print_grid(tr.answer().prediction, j.rows, j.cols, j.cell);
    std::printf("%s\n", j.verdict(tr.answer().prediction).c_str());
    if (!html.empty()) page += hrm::trace_html(tr, j.rows, j.cols, j.title, j.cell);
  }
  if (!html.empty()) hrm::write_file_atomic(html, page);
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
    int maze_size = 30;
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
  ds_maze->add_option("--size", df.maze_size, "maze side (generation)")->capture_default_str();
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

  // train
  auto* train = app.add_subcommand("train", "train from a YAML config (hrm train CONFIG [key=value ...])");
  std::string train_config, resume_dir;
  std::vector<std::string> train_overrides;
  bool quiet = false;
  train->add_option("CONFIG", train_config, "training config YAML (configs/...)");
  train->add_option("--resume", resume_dir, "continue the run in this folder from its latest checkpoint");
  train->add_option("overrides", train_overrides, "key=value and arch.key=value overrides");
  train->add_flag("--quiet", quiet, "no progress output");

  // eval
  auto* eval = app.add_subcommand("eval", "evaluate a checkpoint on a dataset's test split");
  std::string eval_checkpoint, eval_data, eval_config, eval_json, eval_predictions, eval_submission, eval_device = "auto";
  std::vector<std::string> eval_overrides;
  int64_t eval_batch = 0;
  eval->add_option("--checkpoint", eval_checkpoint, "hrm checkpoint or published state dict")->required();
  eval->add_option("--data", eval_data, "dataset folder (default: the one the checkpoint was trained on)");
  eval->add_option("--config", eval_config, "training config YAML (needed for published state dicts)");
  eval->add_option("--json", eval_json, "write the final metrics as one JSON object");
  eval->add_option("--save-predictions", eval_predictions, "write predictions and q_halt logits (.npy prefix)");
  eval->add_option("--submission", eval_submission, "ARC: write a Kaggle-style submission.json here");
  eval->add_option("--batch-size", eval_batch, "evaluation batch size (default: the training global batch)");
  eval->add_option("--device", eval_device, "auto | cpu | cuda[:N]")->capture_default_str();
  eval->add_option("overrides", eval_overrides, "model overrides, e.g. arch.halt_max_steps=32");

  // solve
  auto* solve = app.add_subcommand("solve", "solve one puzzle and show the answer (and the per-segment trace)");
  std::string solve_checkpoint, solve_sudoku, solve_maze, solve_arc, solve_html, solve_data, solve_device = "auto";
  bool solve_trace = false;
  std::vector<std::string> solve_overrides;
  solve->add_option("--checkpoint", solve_checkpoint, "hrm checkpoint")->required();
  solve->add_option("--sudoku", solve_sudoku, "the puzzle: 16, 36 or 81 characters, '.' or '0' for blanks");
  solve->add_option("--maze", solve_maze, "a maze file: one row per line, '#' wall, ' ' open, 'S', 'G'");
  solve->add_option("--arc", solve_arc, "an ARC task JSON (its test inputs are solved)");
  solve->add_option("--data", solve_data, "dataset folder (ARC: for the task's puzzle identifier)");
  solve->add_flag("--trace", solve_trace, "print the decoded prediction after every segment");
  solve->add_option("--html", solve_html, "write the trace as an HTML page");
  solve->add_option("--device", solve_device, "auto | cpu | cuda[:N]")->capture_default_str();
  solve->add_option("overrides", solve_overrides, "model overrides, e.g. arch.halt_max_steps=32");

  CLI11_PARSE(app, argc, argv);
  hrm::set_threads(threads);

  try {
    if (*verify) {
      vopt.free_running = !no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(fixture_dir, vopt, std::cout);
      return r.ok ? 0 : 1;
    }
    if (*train) {
      if (!resume_dir.empty()) {
        // With --resume there is no CONFIG: a first positional key=value is an override.
        if (!train_config.empty()) {
          if (train_config.find('=') == std::string::npos)
            throw hrm::Error("train: give either CONFIG or --resume RUN_DIR, not both");
          train_overrides.insert(train_overrides.begin(), train_config);
        }
        if (threads > 0) train_overrides.push_back("threads=" + std::to_string(threads));
        const hrm::TrainOutcome o = hrm::resume_training(resume_dir, train_overrides, !quiet);
        return o.finished || o.interrupted ? 0 : 1;
      }
      if (train_config.empty()) throw hrm::Error("train: give a CONFIG file or --resume RUN_DIR");
      hrm::TrainConfig config = hrm::TrainConfig::load(train_config, train_overrides);
      if (threads > 0) config.threads = threads;
      const hrm::TrainOutcome o = hrm::train(config, !quiet);
      return o.finished || o.interrupted ? 0 : 1;
    }
    if (*eval) return run_eval(eval_checkpoint, eval_data, eval_config, eval_overrides, eval_device, eval_batch,
                               eval_json, eval_predictions, eval_submission);
    if (*solve) return run_solve(solve_checkpoint, solve_data, solve_overrides, solve_device, solve_sudoku, solve_maze,
                                 solve_arc, solve_trace, solve_html);
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
                  "%d threads, fused CPU kernels %s, %.2fM params\n",
                  preset.c_str(), (long long)config.hidden_size, (long long)config.H_layers,
                  (long long)config.L_layers, (long long)config.H_cycles, (long long)config.L_cycles,
                  (long long)config.seq_len, (long long)bopt.batch_size, config.forward_dtype.c_str(),
                  torch::get_num_threads(), hrm::nn::fused_kernels_name(hrm::nn::fused_kernels()),
                  r.parameters / 1e6);
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
