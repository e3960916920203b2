// hrm: command-line front end. Parses flags and calls the library; what each command does lives there.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "hrm/hrm.h"

namespace {

// `hrm verify-reference` exit code when the fixture's model is not in this build (ctest's skip code).
constexpr int kSkipped = 77;

struct VerifyFlags {
  std::string dir;
  hrm::VerifyOptions options;
  bool no_free_running = false;
};

struct TrainFlags {
  std::string config, resume;
  std::vector<std::string> overrides;
  bool quiet = false;
};

struct BenchFlags {
  std::string preset = "paper";
  hrm::BenchOptions options;
  std::vector<std::string> overrides;
};

void add_verify(CLI::App& app, VerifyFlags& f) {
  auto* c = app.add_subcommand("verify-reference",
                               "replay a reference fixture of the published implementation and compare every saved "
                               "tensor (exit 0 only if all match; 77 when the fixture's model is not in this build)");
  c->add_option("DIR", f.dir, "fixture folder (manifest.json, params/, steps/, eval/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  c->add_option("--rtol", f.options.rtol, "relative tolerance")->capture_default_str();
  c->add_option("--atol", f.options.atol, "absolute tolerance")->capture_default_str();
  c->add_flag("--no-free-running", f.no_free_running, "skip the free-running drift report");
}

void add_bench(CLI::App& app, BenchFlags& f) {
  auto* c = app.add_subcommand("bench", "training-step throughput and peak memory on random data");
  c->add_option("--preset", f.preset, "paper | small")->capture_default_str();
  c->add_option("--batch", f.options.batch_size, "batch size")->capture_default_str();
  c->add_option("--steps", f.options.steps, "timed steps")->capture_default_str();
  c->add_option("--warmup", f.options.warmup, "untimed steps first")->capture_default_str();
  c->add_option("--device", f.options.device, "cpu | cuda[:N]")->capture_default_str();
  c->add_option("--profile", f.options.profile_path, "write a chrome://tracing profile of the timed steps");
  c->add_option("overrides", f.overrides, "model config overrides key=value (e.g. H_cycles=4)");
}

void add_dataset(CLI::App& app, hrm::data::DatasetRequest& r) {
  auto* c = app.add_subcommand("dataset", "build puzzle datasets in the published format");
  c->require_subcommand(1);
  auto* sudoku = c->add_subcommand("sudoku", "Sudoku: import the published CSV or generate offline");
  auto* maze = c->add_subcommand("maze", "Maze: import the published CSV or generate offline");
  auto* arc = c->add_subcommand("arc", "ARC: per-task folders or Kaggle-style combined files");
  for (auto* s : {sudoku, maze}) {
    s->add_option("--train-csv", r.train_csv, "training CSV (source,question,answer,rating)");
    s->add_option("--test-csv", r.test_csv, "test CSV");
    s->add_option("--generate", r.generate, "generate this many training puzzles instead of importing");
    s->add_option("--generate-test", r.generate_test, "generate this many test puzzles");
    s->add_option("--export-csv", r.export_csv,
                  "also write the generated puzzles as CSV: F (train) and F with _test before .csv (test)");
    s->add_option("--seed", r.seed, "random seed")->capture_default_str();
  }
  sudoku->add_option("--size", r.sudoku_size, "board size 4, 6 or 9")->capture_default_str();
  sudoku->add_option("--min-rating", r.min_rating, "keep generated puzzles rated (solver guesses) >= this");
  sudoku->add_option("--num-aug", r.num_aug, "augmented copies per training puzzle")->capture_default_str();
  sudoku->add_option("--subsample-size", r.subsample, "keep this many training puzzles (random)");
  sudoku->add_option("--min-difficulty", r.min_difficulty, "keep CSV rows rated >= this");
  sudoku->add_option("--min-blanks", r.min_blanks,
                     "generated puzzles: stop removing clues at a random number "
                     "of blanks in [min-blanks, max-blanks] (default: minimal)");
  sudoku->add_option("--max-blanks", r.max_blanks, "see --min-blanks");
  maze->add_flag("--aug", r.maze_aug, "8 dihedral copies of each training maze");
  maze->add_option("--size", r.maze_size, "maze side (generation)")->capture_default_str();
  maze->add_option("--min-path-length", r.min_path_length, "keep mazes whose shortest path is longer")
      ->capture_default_str();
  arc->add_option("--arc-dir", r.arc_dirs, "folder with training/ and evaluation/ task files (repeatable)");
  arc->add_option("--kaggle-prefix", r.kaggle_prefix, "PREFIX of PREFIX_<set>_challenges/solutions.json");
  arc->add_option("--sets", r.kaggle_sets, "Kaggle sets to load, comma-separated")->capture_default_str();
  arc->add_option("--test-set", r.test_set, "set whose test pairs form the test split")->capture_default_str();
  arc->add_option("--num-aug", r.arc_num_aug, "augmented variants per task")->capture_default_str();
  arc->add_option("--seed", r.arc_seed, "random seed")->capture_default_str();
  for (auto* s : {sudoku, maze, arc}) {
    s->add_option("--output-dir", r.output_dir, "dataset folder to create")->required();
    s->add_flag("--skip-invalid", r.skip_invalid, "skip (and count) invalid CSV rows instead of failing");
    s->add_flag("--overwrite", r.overwrite, "replace an existing output folder");
    s->callback([&r, s] { r.kind = s->get_name(); });
  }
}

void add_train(CLI::App& app, TrainFlags& f) {
  auto* c = app.add_subcommand("train", "train from a YAML config (hrm train CONFIG [key=value ...])");
  c->add_option("CONFIG", f.config, "training config YAML (configs/...)");
  c->add_option("--resume", f.resume, "continue the run in this folder from its latest checkpoint");
  c->add_option("overrides", f.overrides, "key=value and arch.key=value overrides");
  c->add_flag("--quiet", f.quiet, "no progress output");
}

void add_eval(CLI::App& app, hrm::EvalRequest& r, std::string& json_path) {
  auto* c = app.add_subcommand("eval", "evaluate a checkpoint on a dataset's test split");
  c->add_option("--checkpoint", r.checkpoint, "hrm checkpoint, run folder, or published state dict")->required();
  c->add_option("--data", r.data_dir, "dataset folder (default: the one the checkpoint was trained on)");
  c->add_option("--config", r.config_path, "training config YAML (needed for published state dicts)");
  c->add_option("--json", json_path, "write the final metrics as one JSON object");
  c->add_option("--save-predictions", r.predictions_prefix, "write predictions and q_halt logits (.npy prefix)");
  c->add_option("--submission", r.submission_path, "ARC: write a Kaggle-style submission.json here");
  c->add_option("--batch-size", r.batch_size, "evaluation batch size (default: the training global batch)");
  c->add_option("--device", r.device, "auto | cpu | cuda[:N]")->capture_default_str();
  c->add_option("--weights", r.weights, "auto (the EMA when the checkpoint has one) | ema | raw")
      ->capture_default_str();
  c->add_option("overrides", r.overrides, "model overrides, e.g. arch.halt_max_steps=32");
}

void add_solve(CLI::App& app, hrm::SolveRequest& r) {
  auto* c = app.add_subcommand("solve", "solve one puzzle and show the answer (and the per-segment trace)");
  c->add_option("--checkpoint", r.checkpoint, "hrm checkpoint or run folder")->required();
  c->add_option("--sudoku", r.sudoku, "the puzzle: 16, 36 or 81 characters, '.' or '0' for blanks");
  c->add_option("--maze", r.maze_path, "a maze file: one row per line, '#' wall, ' ' open, 'S', 'G'");
  c->add_option("--arc", r.arc_path, "an ARC task JSON (its test inputs are solved)");
  c->add_option("--data", r.data_dir, "dataset folder (ARC: for the task's puzzle identifier)");
  c->add_flag("--trace", r.trace, "print the decoded prediction after every segment");
  c->add_option("--html", r.html_path, "write the trace as an HTML page");
  c->add_option("--device", r.device, "auto | cpu | cuda[:N]")->capture_default_str();
  c->add_option("--weights", r.weights, "auto (the EMA when the checkpoint has one) | ema | raw")
      ->capture_default_str();
  c->add_option("overrides", r.overrides, "model overrides, e.g. arch.halt_max_steps=32");
}

int run_train(TrainFlags& f, int threads) {
  const hrm::TrainOptions options{!f.quiet, hrm::test_split_evaluator(!f.quiet)};
  hrm::TrainOutcome o;
  if (!f.resume.empty()) {
    // With --resume there is no CONFIG: a first positional key=value is an override.
    if (!f.config.empty()) {
      if (f.config.find('=') == std::string::npos)
        throw hrm::Error("train: give either CONFIG or --resume RUN_DIR, not both");
      f.overrides.insert(f.overrides.begin(), f.config);
    }
    if (threads > 0) f.overrides.push_back("threads=" + std::to_string(threads));
    o = hrm::resume_training(f.resume, f.overrides, options);
  } else {
    if (f.config.empty()) throw hrm::Error("train: give a CONFIG file or --resume RUN_DIR");
    hrm::TrainConfig config = hrm::TrainConfig::load(f.config, f.overrides);
    if (threads > 0) config.threads = threads;
    o = hrm::train(config, options);
  }
  return o.finished || o.interrupted ? 0 : 1;
}

int run_eval(const hrm::EvalRequest& r, const std::string& json_path) {
  const hrm::EvalReport report = hrm::evaluate_checkpoint(r);
  std::printf("eval %s on %s (%s, halt_max_steps %lld, %s weights):\n", r.checkpoint.c_str(), report.data_path.c_str(),
              hrm::data::to_string(report.kind).c_str(), (long long)report.halt_max_steps, report.ema ? "EMA" : "raw");
  for (const auto& [k, v] : report.metrics) std::printf("  %-18s %.6g\n", k.c_str(), v);
  const std::string json = hrm::metrics_json(report.metrics);
  if (!json_path.empty()) hrm::write_file_atomic(json_path, json + "\n");
  std::printf("%s\n", json.c_str());
  return 0;
}

int run_bench(const BenchFlags& f) {
  hrm::ModelConfig config = hrm::bench_preset(f.preset);
  for (const auto& o : f.overrides) config.apply_override(o, "command line");
  config.validate("command line");
  const hrm::BenchResult r = hrm::benchmark_training_step(config, f.options);
  std::printf("%s", hrm::bench_report(f.preset, config, f.options, r).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hrm: Hierarchical Reasoning Models in C++ (LibTorch)"};
  app.set_version_flag("--version", std::string(HRM_VERSION_STRING));
  app.require_subcommand(1);
  int threads = 0;
  std::string log_level = "info";
  app.add_option("--threads", threads, "intra-op CPU threads (default: all cores)");
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error | off")->capture_default_str();

  VerifyFlags verify;
  BenchFlags bench;
  hrm::data::DatasetRequest dataset;
  TrainFlags train;
  hrm::EvalRequest eval;
  std::string eval_json;
  hrm::SolveRequest solve;
  add_verify(app, verify);
  add_bench(app, bench);
  add_dataset(app, dataset);
  add_train(app, train);
  add_eval(app, eval, eval_json);
  add_solve(app, solve);
  CLI11_PARSE(app, argc, argv);

  try {
    hrm::log::set_level(hrm::log::parse_level(log_level));
    hrm::set_threads(threads);
    const std::string command = app.get_subcommands().front()->get_name();
    if (command == "verify-reference") {
      verify.options.free_running = !verify.no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(verify.dir, verify.options, std::cout);
      if (!r.unsupported_model.empty()) std::cout << "SKIPPED: no '" << r.unsupported_model << "' model" << std::endl;
      return r.ok ? 0 : r.unsupported_model.empty() ? 1 : kSkipped;
    }
    if (command == "train") return run_train(train, threads);
    if (command == "eval") return run_eval(eval, eval_json);
    if (command == "solve") return std::printf("%s", hrm::solve(solve).c_str()) < 0;
    if (command == "dataset") return std::printf("%s", hrm::data::build_dataset(dataset).c_str()) < 0;
    if (command == "bench") return run_bench(bench);
  } catch (const hrm::Error& e) {
    std::cerr << "hrm: error: " << e.what() << std::endl;
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "hrm: error: " << e.what_without_backtrace() << std::endl;
    return 2;
  }
  return 0;
}
