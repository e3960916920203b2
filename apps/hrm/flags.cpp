#include "flags.h"

namespace hrm::cli {

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
  c->add_option("--world-size", f.options.world_size,
                "data-parallel ranks started on this machine (Gloo on loopback); --batch is the global batch")
      ->capture_default_str();
  c->add_flag("--kernels", f.kernels,
              "time each fused CPU kernel against LibTorch's ops on every instruction-set path this CPU runs "
              "(--steps calls each) instead of training steps");
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

namespace {
// --data, --device, --weights and the model overrides: every command that loads a checkpoint for inference.
void add_inference_options(CLI::App* c, std::string& data, const char* data_help, std::string& device,
                           std::string& weights, std::vector<std::string>* overrides) {
  c->add_option("--data", data, data_help);
  c->add_option("--device", device, "auto | cpu | cuda[:N]")->capture_default_str();
  c->add_option("--weights", weights, "auto (the EMA when the checkpoint has one) | ema | raw")->capture_default_str();
  if (overrides) c->add_option("overrides", *overrides, "model overrides, e.g. arch.halt_max_steps=32");
}
}  // namespace

void add_eval(CLI::App& app, hrm::EvalRequest& r, std::string& json_path) {
  auto* c = app.add_subcommand("eval", "evaluate a checkpoint on a dataset's test split");
  c->add_option("--checkpoint", r.checkpoint, "hrm checkpoint, run folder, or published state dict")->required();
  add_inference_options(c, r.data_dir, "dataset folder (default: the one the checkpoint was trained on)", r.device,
                        r.weights, &r.overrides);
  c->add_option("--config", r.config_path, "training config YAML (needed for published state dicts)");
  c->add_option("--json", json_path, "write the final metrics as one JSON object");
  c->add_option("--save-predictions", r.predictions_prefix, "write predictions and q_halt logits (.npy prefix)");
  c->add_option("--submission", r.submission_path, "ARC: write a Kaggle-style submission.json here");
  c->add_option("--batch-size", r.batch_size, "evaluation batch size (default: the training global batch)");
}

void add_solve(CLI::App& app, hrm::SolveRequest& r) {
  auto* c = app.add_subcommand("solve", "solve one puzzle and show the answer (and the per-segment trace)");
  c->add_option("--checkpoint", r.checkpoint, "hrm checkpoint or run folder")->required();
  c->add_option("--sudoku", r.sudoku, "the puzzle: 16, 36 or 81 characters, '.' or '0' for blanks");
  c->add_option("--maze", r.maze_path, "a maze file: one row per line, '#' wall, ' ' open, 'S', 'G'");
  c->add_option("--arc", r.arc_path, "an ARC task JSON (its test inputs are solved)");
  add_inference_options(c, r.data_dir, "dataset folder (ARC: for the task's puzzle identifier)", r.device, r.weights,
                        &r.overrides);
  c->add_flag("--trace", r.trace, "print the decoded prediction after every segment");
  c->add_option("--html", r.html_path, "write the trace as an HTML page");
}

void add_report(CLI::App& app, std::string& run_dir, std::string& out) {
  auto* c = app.add_subcommand("report", "write a run's HTML report (curves, evaluations, analyses, config)");
  c->add_option("RUN_DIR", run_dir, "the run folder")->required()->check(CLI::ExistingDirectory);
  c->add_option("--out", out, "the HTML file (default RUN_DIR/report.html)");
}

void add_analyze(CLI::App& app, AnalyzeFlags& f) {
  auto* c = app.add_subcommand("analyze", "the paper's analyses of a checkpoint, as JSON (and in its run's report)");
  c->require_subcommand(1);
  auto& r = f.request;
  auto* residuals = c->add_subcommand("residuals", "forward residuals of z_L and z_H within segments (Fig. 3)");
  auto* pr = c->add_subcommand("pr", "participation ratio of z_H and z_L, trained vs untrained (Fig. 8)");
  auto* scaling = c->add_subcommand("scaling", "exact accuracy against halt_max_steps at evaluation (Fig. 5c)");
  pr->add_option("--trajectories", r.trajectories, "test puzzles to pool")->capture_default_str();
  scaling->add_option("--max-steps", f.max_steps, "comma-separated halt_max_steps values")->capture_default_str();
  for (auto* s : {residuals, pr, scaling}) {
    s->add_option("--checkpoint", r.checkpoint, "hrm checkpoint or run folder")->required();
    add_inference_options(s, r.data_dir, "dataset folder (default: the checkpoint's)", r.device, r.weights, nullptr);
    s->add_option("--json", r.json_path, "output JSON (default RUN_DIR/analysis/<analysis>.json)");
    s->add_option("--batch-size", r.batch_size, "test batch size");
    s->callback([&r, s] { r.kind = s->get_name(); });
  }
}

}  // namespace hrm::cli
