#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <csignal>
#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace hrm;
using hrm::test::error_of;
using hrm::test::TempDir;
namespace fs = std::filesystem;

namespace {

// kill() to the whole process, as a user's Ctrl-C or `kill` would, then waits (up to 10 s) for the scope's flag: the
// waiting thread takes the signal asynchronously. std::raise would target this thread, which blocks it.
bool send_stop_signal_to_this_process(int sig) {
  ::kill(::getpid(), sig);
  for (int i = 0; i < 10000 && stop_signal() != sig; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return stop_signal() == sig;
}

// A learnable toy task: 4x4 Sudoku with few blanks.
std::string make_sudoku4(const std::string& out, int64_t n_train = 400, int64_t n_test = 64) {
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

TrainOptions quiet() { return TrainOptions{false, test_split_evaluator(false)}; }

std::vector<nlohmann::json> rows(const std::string& run_dir, const std::string& split) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["split"] != split) continue;
    j.erase("samples_per_s");  // timing, not behaviour
    j.erase("elapsed_s");
    out.push_back(j);
  }
  return out;
}

// Every test here starts from one finished training run on the toy task (12 epochs, evaluations at epochs 6 and
// 12). ctest runs each test in its own process, so the run is made once per test binary and shared through a
// folder next to the binary (keyed by the binary's modification time and the kernel-choosing environment), under
// a file lock.
class ToyRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    struct stat st {};
    ASSERT_EQ(::stat("/proc/self/exe", &st), 0);
    const std::string exe = fs::read_symlink("/proc/self/exe").string();
    // Keyed by the environment that picks kernels too: a run made on another path (HRM_CPU_ISA=avx2 resolves
    // forward_dtype auto to float32) rounds differently and is no reference for this one.
    std::string numerics;
    for (const char* var : {"HRM_CPU_ISA", "HRM_FUSED_KERNELS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                            "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE"})
      if (const char* value = std::getenv(var)) numerics += std::string(var) + "=" + value + ";";
    const std::string this_build = exe + ".toy_run_" + std::to_string(static_cast<long long>(st.st_mtime)) + "_";
    root_ = this_build + std::to_string(std::hash<std::string>{}(numerics) % 1000000007);
    fs::create_directories(root_);
    // Runs of earlier builds of this binary are stale.
    for (const auto& e : fs::directory_iterator(fs::path(exe).parent_path())) {
      const std::string p = e.path().string();
      if (p.rfind(exe + ".toy_run_", 0) == 0 && p.rfind(this_build, 0) != 0) fs::remove_all(e.path());
    }
    const int lock = ::open((root_ + ".lock").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(lock, 0);
    ::flock(lock, LOCK_EX);
    if (!fs::exists(root_ + "/done")) {
      fs::remove_all(root_);
      fs::create_directories(root_);
      make_sudoku4(root_ + "/data");
      hrm::test::write_toy_config(root_, root_ + "/data");
      TrainConfig a = TrainConfig::load(config(), {"run_dir=" + root_ + "/run_a"});
      const TrainOutcome ra = train(a, quiet());
      if (ra.finished) std::ofstream(root_ + "/done") << "ok\n";
    }
    ::flock(lock, LOCK_UN);
    ::close(lock);
    ASSERT_TRUE(fs::exists(root_ + "/done")) << "the toy run did not finish";
  }

  static std::string config() { return root_ + "/configs/toy.yaml"; }
  static std::string run_a() { return root_ + "/run_a"; }
  static std::string data() { return root_ + "/data"; }

  TempDir dir_;
  static std::string root_;
};
std::string ToyRun::root_;

}  // namespace

TEST_F(ToyRun, LossFallsAndAccuracyRises) {
  const auto train_a = rows(run_a(), "train"), eval_a = rows(run_a(), "eval");
  ASSERT_GT(train_a.size(), 100u);
  ASSERT_EQ(eval_a.size(), 2u);
  auto mean = [&](const char* key, size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += train_a[i][key].get<double>();
    return s / static_cast<double>(to - from);
  };
  const size_t n = train_a.size();
  EXPECT_LT(mean("lm_loss", n - 20, n), 0.7 * mean("lm_loss", 0, 20));
  EXPECT_GT(eval_a.back()["accuracy"].get<double>(), 0.6);
}

TEST_F(ToyRun, WritesConfigMetricsLogAndCheckpoints) {
  for (const char* f : {"/config.yaml", "/metrics.csv", "/metrics.jsonl", "/train.log"})
    EXPECT_TRUE(fs::exists(run_a() + f)) << f;
  EXPECT_FALSE(list_checkpoints(run_a()).empty());
  // The log file has the run's lines with a timestamp and the level.
  std::ifstream log(run_a() + "/train.log");
  std::string first;
  std::getline(log, first);
  EXPECT_NE(first.find("[info] training " + run_a()), std::string::npos) << first;
}

TEST_F(ToyRun, StoppedAndResumedRunLogsTheSameMetrics) {
  TrainConfig b = TrainConfig::load(config(), {"run_dir=" + dir_.file("run_b"), "max_steps=50"});
  const TrainOutcome rb1 = train(b, quiet());
  EXPECT_TRUE(rb1.interrupted);
  EXPECT_EQ(rb1.steps, 50);
  const TrainOutcome rb2 = resume_training(dir_.file("run_b"), {}, quiet());
  EXPECT_TRUE(rb2.finished);
  EXPECT_EQ(rows(rb2.run_dir, "train"), rows(run_a(), "train"));
  EXPECT_EQ(rows(rb2.run_dir, "eval"), rows(run_a(), "eval"));
}

TEST_F(ToyRun, ResumeSkipsATruncatedNewestCheckpointAndRefusesAChangedDataset) {
  const std::string run = dir_.file("run_t");
  fs::copy(run_a(), run, fs::copy_options::recursive);
  const auto all = list_checkpoints(run);
  ASSERT_GE(all.size(), 2u);
  const int64_t previous = all[all.size() - 2].first;
  fs::resize_file(all.back().second, fs::file_size(all.back().second) / 2);  // the machine lost power mid-write
  const TrainOutcome r = resume_training(run, {"max_steps=" + std::to_string(previous + 1)}, quiet());
  EXPECT_EQ(r.steps, previous + 1);  // continued from the previous checkpoint
  // Another dataset (other counts) under the same run: refused, naming both counts.
  const std::string other = make_sudoku4(dir_.file("other"), 200, 32);
  const std::string e = test::error_of([&] { resume_training(run, {"data_path=" + other}, quiet()); });
  EXPECT_NE(e.find("the dataset changed under this run"), std::string::npos) << e;
  EXPECT_NE(e.find(other), std::string::npos) << e;
  EXPECT_NE(e.find("train_examples now, the checkpoint was written with"), std::string::npos) << e;
}

// SIGINT/SIGTERM reach the scope's flag but not a thread that computes: oneDNN's JIT sgemm corrupts the heap when a
// signal interrupts it (src/util/signals.cpp). The CLI-level check, 300 signals at a training run, is
// tests/cli/train_signal.sh.
TEST(Signals, StopSignalsGoToAWaitingThreadNotToComputingOnes) {
  StopSignalScope scope;
  const auto blocks_stop_signals = [] {
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    return sigismember(&mask, SIGINT) == 1 && sigismember(&mask, SIGTERM) == 1;
  };
  EXPECT_TRUE(blocks_stop_signals());
  bool worker_blocks = false;
  std::thread([&] { worker_blocks = blocks_stop_signals(); }).join();
  EXPECT_TRUE(worker_blocks) << "a thread started later takes signals itself";
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    if (!blocks_stop_signals()) ADD_FAILURE() << "an intra-op worker takes signals itself";
  });
  EXPECT_EQ(stop_signal(), 0);
  EXPECT_TRUE(send_stop_signal_to_this_process(SIGINT));
  EXPECT_EQ(stop_signal(), SIGINT);
}

TEST_F(ToyRun, SigtermDuringEvaluationEndsItAtTheNextBatch) {
  ACTModel model = load_model(latest_checkpoint(run_a()));
  const data::PuzzleDataset test(data::LoaderConfig::test_split(data(), 16));
  StopSignalScope scope;
  ASSERT_TRUE(send_stop_signal_to_this_process(SIGTERM));  // caught by the scope: the process goes on
  const std::string e =
      test::error_of([&] { evaluate(model, test, loss_type_from_string("stablemax_cross_entropy"), false); });
  EXPECT_NE(e.find("stopped after 0 of 4 batches"), std::string::npos) << e;
}

// A clock on which each training step takes one simulated second.
TrainOptions one_second_per_step(double* seconds) {
  TrainOptions options = quiet();
  options.on_step = [seconds](int64_t, const std::map<std::string, double>&) { *seconds += 1; };
  options.clock = [seconds] { return *seconds; };
  return options;
}

TEST_F(ToyRun, FitTimeLimitSizesARunThatWouldNotFit) {
  // 150 steps of 1 s (simulated) do not fit into 60 s: the first 20 steps always run, their rate (steps 6-20) sizes
  // the run to what fits into 85% of the limit (the rest is for the final evaluation): 20 + (51 - 19) steps.
  double seconds = 0;
  const TrainOutcome r = train(TrainConfig::load(config(), {"run_dir=" + dir_.file("fit"), "time_limit_minutes=1",
                                                            "fit_time_limit=true", "eval_interval=0"}),
                               one_second_per_step(&seconds));
  EXPECT_EQ(r.total_steps, 150);
  EXPECT_EQ(r.steps, 52);
  EXPECT_TRUE(r.finished);
  const std::string log = read_file(dir_.file("fit/train.log"));
  EXPECT_NE(log.find("fit_time_limit: 32.0 samples/s over steps 6-20; the run is sized to 52 of 150 steps"),
            std::string::npos)
      << log;
}

// time_limit_minutes without fit_time_limit stops the run with a checkpoint when the clock says so, and
// checkpoint_every_minutes writes one each time that much time passed since the last (1 s per simulated step: the
// step that starts at 30 s and the one that starts at 60 s).
TEST_F(ToyRun, TimeLimitAndCheckpointsEveryMinutesFollowTheClock) {
  double seconds = 0;
  const TrainOutcome r =
      train(TrainConfig::load(config(), {"run_dir=" + dir_.file("clock"), "time_limit_minutes=1",
                                         "checkpoint_every_minutes=0.5", "eval_interval=0", "keep_checkpoints=5"}),
            one_second_per_step(&seconds));
  EXPECT_TRUE(r.interrupted);
  EXPECT_EQ(r.steps, 61);
  std::vector<std::string> saved;
  for (const auto& [step, path] : list_checkpoints(r.run_dir)) saved.push_back(fs::path(path).filename().string());
  EXPECT_EQ(saved, (std::vector<std::string>{"step_31.pt", "step_61.pt"}));
  EXPECT_NE(read_file(dir_.file("clock/train.log")).find("time limit reached at step 61"), std::string::npos);
}

TEST_F(ToyRun, FitTimeLimitShortensARunThatSlowsDown) {
  // On a simulated clock (real time made this test fail on a loaded machine): each step takes 1 s, the first
  // evaluation nothing, later ones 20 s, the limit is 100 s. The rate measured over steps 6-20 sizes the run to 86
  // steps (20 + 85 - 19), then the evaluations do not fit; the run is shortened after each (to 43, then 39) so that
  // it ends its schedule with its final evaluation inside the limit. Sized once only, the clock cuts it off at
  // step 49.
  double seconds = 0;
  int calls = 0;
  TrainOptions options = one_second_per_step(&seconds);
  const Evaluator evaluate = options.evaluate;
  options.evaluate = [&](ACTModel& model, const TrainConfig& config) {
    if (calls++ > 0) seconds += 20;
    return evaluate(model, config);
  };
  const TrainOutcome r =
      train(TrainConfig::load(config(), {"run_dir=" + dir_.file("slow"), "fit_time_limit=true", "eval_interval=1",
                                         "time_limit_minutes=" + std::to_string(100.0 / 60)}),
            options);
  const std::string log = read_file(dir_.file("slow/train.log"));
  EXPECT_NE(log.find("the run is sized to 86 of 150 steps"), std::string::npos) << log;
  EXPECT_NE(log.find("the run is shortened to "), std::string::npos) << log;
  EXPECT_TRUE(r.finished) << "cut off by the clock instead: " << log;
  EXPECT_LT(r.steps, 86);
  EXPECT_LE(seconds, 100);
  EXPECT_GE(calls, 3);
}

// Resuming a run that finished changes nothing (it used to evaluate again and log the last evaluation twice).
TEST_F(ToyRun, ResumingAFinishedRunChangesNothing) {
  const std::string run = dir_.file("run_e");
  fs::copy(run_a(), run, fs::copy_options::recursive);
  const std::string metrics = read_file(run + "/metrics.jsonl"), newest = latest_checkpoint(run);
  const auto written = fs::last_write_time(newest);
  const TrainOutcome r = resume_training(run, {}, quiet());
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.steps, 150);
  EXPECT_EQ(read_file(run + "/metrics.jsonl"), metrics);
  EXPECT_EQ(latest_checkpoint(run), newest);
  EXPECT_EQ(fs::last_write_time(newest), written);
  EXPECT_NE(read_file(run + "/train.log").find("finished at step 150 of 150: nothing to resume"), std::string::npos);
}

TEST_F(ToyRun, ResumingAtAnEvaluationBoundaryDoesNotRepeatIt) {
  const auto eval_a = rows(run_a(), "eval");
  fs::copy(run_a(), dir_.file("run_c"), fs::copy_options::recursive);
  const std::string boundary = "step_" + std::to_string(eval_a.front()["step"].get<int64_t>()) + ".pt";
  ASSERT_TRUE(fs::exists(dir_.file("run_c/checkpoints/" + boundary)));
  for (const auto& e : fs::directory_iterator(dir_.file("run_c/checkpoints")))
    if (e.path().filename() != boundary) fs::remove(e.path());
  const TrainOutcome rc = resume_training(dir_.file("run_c"), {}, quiet());
  EXPECT_TRUE(rc.finished);
  EXPECT_EQ(rows(rc.run_dir, "train"), rows(run_a(), "train"));
  EXPECT_EQ(rows(rc.run_dir, "eval"), eval_a);
}

// A checkpoint written at an evaluation's step before the evaluation ran (a periodic one) resumes into that
// evaluation again: its row, logged before the run was killed, is not kept twice (cli.train_kill_campaign found a
// run killed while writing the checkpoint after an evaluation logging it twice).
TEST_F(ToyRun, ResumingFromACheckpointWrittenBeforeItsEvaluationLogsItOnce) {
  const int64_t at = rows(run_a(), "eval").front()["step"].get<int64_t>();
  const std::string run = dir_.file("run_d");
  const TrainOutcome first = train(TrainConfig::load(config(), {"run_dir=" + run, "checkpoint_every_eval=false",
                                                                "checkpoint_every_steps=" + std::to_string(at),
                                                                "max_steps=" + std::to_string(at + 2)}),
                                   quiet());
  ASSERT_EQ(first.steps, at + 2);
  ASSERT_EQ(rows(run, "eval").size(), 1u);
  fs::remove(run + "/checkpoints/step_" + std::to_string(at + 2) + ".pt");  // killed before this one was written
  ASSERT_EQ(latest_checkpoint(run), run + "/checkpoints/step_" + std::to_string(at) + ".pt");
  const TrainOutcome rest = resume_training(run, {"max_steps=0"}, quiet());
  EXPECT_TRUE(rest.finished);
  EXPECT_EQ(rows(run, "train"), rows(run_a(), "train"));
  EXPECT_EQ(rows(run, "eval"), rows(run_a(), "eval"));
}

TEST_F(ToyRun, EvaluatingTheCheckpointReproducesTheLastEvaluation) {
  const auto last = rows(run_a(), "eval").back();
  InferenceSetup s = load_for_inference(latest_checkpoint(run_a()), "", "", {}, "cpu");
  data::PuzzleDataset test(data::LoaderConfig{s.data_path, "test", 32, true});
  EvalOutput e = evaluate(s.model, test, s.loss_type, false);
  EXPECT_NEAR(e.metrics["exact_accuracy"], last["exact_accuracy"].get<double>(), 1e-9);
  EXPECT_NEAR(e.metrics["accuracy"], last["accuracy"].get<double>(), 1e-6);
  add_checker_metrics(data::detect_task_kind(s.data_path, test.metadata()), e, &e.metrics);
  EXPECT_GE(e.metrics["valid_solutions"], e.metrics["exact_accuracy"] - 1e-9);  // 4x4 puzzles here are unique
  EXPECT_NEAR(e.metrics["valid_solutions"], last["valid_solutions"].get<double>(), 1e-9);
  // The same through the one-call path of `hrm eval`.
  EvalRequest r;
  r.checkpoint = run_a();
  r.batch_size = 32;
  r.progress = false;
  r.device = "cpu";
  const EvalReport report = evaluate_checkpoint(r);
  EXPECT_EQ(report.kind, data::TaskKind::Sudoku);
  EXPECT_NEAR(report.metrics.at("exact_accuracy"), last["exact_accuracy"].get<double>(), 1e-9);
}

TEST_F(ToyRun, MoreSegmentsAtInference) {
  InferenceSetup more = load_for_inference(run_a(), "", "", {"arch.halt_max_steps=6"}, "cpu");
  EXPECT_EQ(more.model->config().halt_max_steps, 6);
  data::PuzzleDataset test(data::LoaderConfig{more.data_path, "test", 32, true});
  EXPECT_NEAR(evaluate(more.model, test, more.loss_type, false).metrics["steps"], 6.0, 1e-9);
}

TEST_F(ToyRun, SolveTracesEverySegmentAndCopiesTheClues) {
  InferenceSetup s = load_for_inference(run_a(), "", "", {}, "cpu");
  data::PuzzleDataset test(data::LoaderConfig{s.data_path, "test", 32, true});
  const torch::Tensor first = test.iteration_batches(0)[0].batch.inputs[0].contiguous();
  const std::vector<int32_t> tokens(first.data_ptr<int32_t>(), first.data_ptr<int32_t>() + 16);
  const SolveTrace trace = solve_with_trace(s.model, tokens);
  EXPECT_EQ(trace.segments.size(), 3u);
  EXPECT_GE(trace.halt_segment, 1);
  for (size_t c = 0; c < 16; ++c)
    if (tokens[c] > 1) EXPECT_EQ(trace.answer().prediction[c], tokens[c]);  // clues are copied
}

TEST_F(ToyRun, ARunFolderWithCheckpointsIsNotOverwritten) {
  TrainConfig a = TrainConfig::load(config(), {"run_dir=" + run_a()});
  EXPECT_NE(error_of([&] { train(a, quiet()); }).find("already has checkpoints"), std::string::npos);
}

TEST_F(ToyRun, AFolderWithOnlyAKilledCheckpointWriteStartsAfresh) {
  // Killed while writing its first checkpoint: only the write's temporary file is there, nothing to resume, so a
  // fresh start takes the folder (and removes the leftover) instead of pointing at --resume, which has nothing.
  const std::string run = dir_.file("killed_in_first_save");
  fs::create_directories(run + "/checkpoints");
  const std::string leftover = run + "/checkpoints/step_10.pt.tmp.4242.17";
  std::ofstream(leftover) << "half a checkpoint";
  EXPECT_NE(error_of([&] { latest_checkpoint(run); }).find("no checkpoint found"), std::string::npos);
  train(TrainConfig::load(config(), {"run_dir=" + run, "max_steps=2", "eval_interval=0"}), quiet());
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_FALSE(list_checkpoints(run).empty());
}

TEST_F(ToyRun, AnIncompatibleDatasetIsAClearError) {
  const std::string other = dir_.file("maze");
  std::vector<data::Maze> mt, me;
  data::generate_maze_split(9, 40, 8, 4, 1, &mt, &me, false);
  data::MazeBuildOptions mo;
  mo.output_dir = other;
  data::build_maze_dataset(mt, me, mo);
  const std::string e = error_of([&] { load_for_inference(latest_checkpoint(run_a()), other, "", {}, "cpu"); });
  EXPECT_NE(e.find("is incompatible with"), std::string::npos) << e;
  EXPECT_NE(e.find("seq_len 16, vocab 6"), std::string::npos) << e;
}

// A model's own requirement (hrm needs a layer per level) found when the run starts names the config it came from,
// and the run's train.log records the error the console showed.
TEST_F(ToyRun, AModelRequirementNamesTheConfigAndLandsInTrainLog) {
  const std::string run = dir_.file("no_layers");
  const std::string e = error_of([&] {
    train(TrainConfig::load(config(), {"run_dir=" + run, "arch.H_layers=0"}), quiet());
  });
  EXPECT_NE(e.find(config() + " with the command line's overrides (arch): hrm: H_layers and L_layers must be >= 1"),
            std::string::npos)
      << e;
  EXPECT_NE(read_file(run + "/train.log").find("[error] " + e), std::string::npos) << read_file(run + "/train.log");
}

// The checkpoint's tensors by name (model, and extras under "extra.").
StateDict checkpoint_tensors(const std::string& path) {
  LoadedCheckpoint ck = read_checkpoint(path);
  StateDict all = ck.model;
  for (const auto& [k, v] : ck.extra) all["extra." + k] = v;
  return all;
}

TEST_F(ToyRun, EmaRunResumesExactlyAndEvaluatesTheAverage) {
  const std::vector<std::string> ema = {"ema=true", "ema_rate=0.9"};
  auto with = [&](std::vector<std::string> o) {
    o.insert(o.end(), ema.begin(), ema.end());
    return o;
  };
  const TrainOutcome whole =
      train(TrainConfig::load(config(), with({"run_dir=" + dir_.file("x"), "max_steps=40"})), quiet());
  ASSERT_EQ(whole.steps, 40);
  train(TrainConfig::load(config(), with({"run_dir=" + dir_.file("y"), "max_steps=20"})), quiet());
  const TrainOutcome resumed = resume_training(dir_.file("y"), {"max_steps=40"}, quiet());
  ASSERT_EQ(resumed.steps, 40);
  EXPECT_EQ(rows(dir_.file("y"), "train"), rows(dir_.file("x"), "train"));
  const StateDict a = checkpoint_tensors(latest_checkpoint(dir_.file("x")));
  const StateDict b = checkpoint_tensors(latest_checkpoint(dir_.file("y")));
  ASSERT_EQ(a.size(), b.size());
  int64_t ema_tensors = 0;
  for (const auto& [k, t] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    if (k == "extra.train.elapsed_s") continue;  // wall-clock time
    EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
    ema_tensors += k.rfind("extra.ema.", 0) == 0;
  }
  EXPECT_GT(ema_tensors, 0);
  // eval/solve take the EMA by default; --weights raw the trained weights.
  InferenceSetup averaged = load_for_inference(dir_.file("x"), "", "", {}, "cpu");
  InferenceSetup raw = load_for_inference(dir_.file("x"), "", "", {}, "cpu", "raw");
  EXPECT_TRUE(averaged.ema);
  EXPECT_FALSE(raw.ema);
  const std::string w = "inner.lm_head.weight";
  EXPECT_TRUE(torch::equal(model_state(averaged.model).at(w), a.at("extra.ema." + w)));
  EXPECT_TRUE(torch::equal(model_state(raw.model).at(w), a.at(w)));
  EXPECT_FALSE(torch::equal(a.at(w), a.at("extra.ema." + w)));
  EXPECT_NE(error_of([&] { load_for_inference(run_a(), "", "", {}, "cpu", "ema"); }).find("has no EMA"),
            std::string::npos);
}

TEST_F(ToyRun, EveryModelTrainsFromOneConfigLine) {
  for (const char* name : {"trm", "transformer", "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"}) {
    const std::string run = dir_.file(std::string("run_") + (name[0] == 'r' ? "published" : name));
    const TrainOutcome o = train(
        TrainConfig::load(config(), {"run_dir=" + run, "max_steps=3", std::string("arch.name=") + name}), quiet());
    EXPECT_EQ(o.steps, 3) << name;
    InferenceSetup s = load_for_inference(run, "", "", {}, "cpu");
    EXPECT_EQ(canonical_model_name(s.model->config().name), canonical_model_name(name));
    data::PuzzleDataset test(data::LoaderConfig{s.data_path, "test", 32, true});
    EXPECT_EQ(evaluate(s.model, test, s.loss_type, false).metrics.at("count"), 64) << name;
  }
  EXPECT_NE(error_of([&] {
              train(TrainConfig::load(config(), {"run_dir=" + dir_.file("bad"), "arch.name=nope"}), quiet());
            }).find("unknown model 'nope'"),
            std::string::npos);
}

namespace {
// A dataset of random 16-token puzzles over vocab 7 with `identifiers` puzzle identifiers (1..identifiers-1 used).
std::string make_identified(const std::string& out, int identifiers) {
  data::DatasetFolder folder(out);
  data::DatasetMetadata meta;
  meta.vocab_size = 7;
  meta.num_puzzle_identifiers = identifiers;
  std::mt19937_64 rng(static_cast<uint64_t>(identifiers));
  for (const char* split : {"train", "test"}) {
    data::SplitBuilder b(16);
    for (int i = 0; i < 64; ++i) {
      std::vector<uint8_t> x(16), y(16);
      for (int c = 0; c < 16; ++c) {
        x[c] = static_cast<uint8_t>(1 + rng() % 6);
        y[c] = static_cast<uint8_t>(1 + (x[c] + i) % 6);
      }
      b.add_example(x, y);
      b.end_puzzle(1 + i % (identifiers - 1));
      b.end_group();
    }
    b.write(folder.split_dir(split), meta);
  }
  folder.commit();
  return out;
}
}  // namespace

TEST_F(ToyRun, FineTuningResizesThePuzzleEmbeddingAndFreezesTheRest) {
  const std::string a = make_identified(dir_.file("ids4"), 4), b = make_identified(dir_.file("ids9"), 9);
  const std::vector<std::string> arch = {"arch.puzzle_emb_ndim=64", "global_batch_size=16", "max_steps=4"};
  auto with = [&](std::vector<std::string> o) {
    o.insert(o.end(), arch.begin(), arch.end());
    return o;
  };
  train(TrainConfig::load(config(), with({"run_dir=" + dir_.file("pre"), "data_path=" + a})), quiet());
  const StateDict before = checkpoint_tensors(latest_checkpoint(dir_.file("pre")));
  const TrainOutcome tuned =
      train(TrainConfig::load(config(), with({"run_dir=" + dir_.file("tuned"), "data_path=" + b,
                                              "init_from=" + dir_.file("pre"), "freeze_weights=true"})),
            quiet());
  ASSERT_EQ(tuned.steps, 4);
  const StateDict after = checkpoint_tensors(latest_checkpoint(dir_.file("tuned")));
  int64_t compared = 0;
  for (const auto& [k, t] : after) {
    if (k.rfind("extra.", 0) == 0 || k == "inner.puzzle_emb.weights") continue;
    EXPECT_TRUE(torch::equal(t, before.at(k))) << k << " changed";
    ++compared;
  }
  EXPECT_GT(compared, 10);
  const torch::Tensor table = after.at("inner.puzzle_emb.weights");
  EXPECT_EQ(table.size(0), 9);
  // Rows the fine-tuning never used still hold the mean of the pre-trained rows; used rows moved.
  const torch::Tensor mean = before.at("inner.puzzle_emb.weights").mean(0);
  EXPECT_TRUE(torch::allclose(table[0], mean));
  EXPECT_FALSE(torch::equal(table, mean.expand_as(table)));
  EXPECT_NE(read_file(dir_.file("tuned/train.log")).find("the mean of the trained ones"), std::string::npos);
  // Another architecture is an error naming the keys.
  const std::string e = error_of([&] {
    train(TrainConfig::load(config(), with({"run_dir=" + dir_.file("other"), "data_path=" + b,
                                            "init_from=" + dir_.file("pre"), "arch.hidden_size=32"})),
          quiet());
  });
  EXPECT_NE(e.find("shape mismatch for"), std::string::npos) << e;
}

TEST(Train, NonFiniteLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  const std::string data = make_sudoku4(dir.file("sudoku4"), 200, 32);
  const std::string config = hrm::test::write_toy_config(dir.str(), data);
  TrainConfig c = TrainConfig::load(
      config, {"run_dir=" + dir.file("run"), "lr=1e30", "lr_warmup_steps=0", "arch.forward_dtype=float32"});
  const std::string e = error_of([&] { train(c, quiet()); });
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
  EXPECT_THROW(
      load_for_inference(hrm::test::fixture_dir() + "/reference_state_dict.pt", dir.file("data"), "", {}, "cpu"),
      hrm::Error);
}
