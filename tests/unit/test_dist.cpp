// Data-parallel training: the launch contract, the gradient buckets, and real runs of `hrm train` with 2 ranks
// (Gloo on loopback) against 1 process with the same global batch.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace hrm {
namespace {
namespace fs = std::filesystem;
using test::error_of;
using test::TempDir;

dist::LaunchInfo launch(const std::map<std::string, std::string>& vars) {
  return dist::launch_info([&](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}
std::string launch_error(const std::map<std::string, std::string>& vars) {
  return error_of([&] { launch(vars); });
}

TEST(Launch, NoVariablesIsOneProcess) {
  const dist::LaunchInfo l = launch({});
  EXPECT_FALSE(l.distributed());
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.world_size, 1);
}

TEST(Launch, TorchrunVariables) {
  const dist::LaunchInfo l = launch({{"RANK", "3"},
                                     {"WORLD_SIZE", "8"},
                                     {"MASTER_ADDR", "node1"},
                                     {"MASTER_PORT", "29400"},
                                     {"LOCAL_RANK", "1"},
                                     {"LOCAL_WORLD_SIZE", "4"}});
  EXPECT_TRUE(l.distributed());
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_world_size, 4);
  EXPECT_EQ(l.master_addr, "node1");
  EXPECT_EQ(l.port, 29400);
  EXPECT_EQ(l.launcher, "torchrun");
  // LOCAL_* default to 0 and 1; WORLD_SIZE=1 is the single-process path.
  const dist::LaunchInfo d = launch({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}});
  EXPECT_EQ(d.local_rank, 0);
  EXPECT_EQ(d.local_world_size, 1);
  EXPECT_FALSE(launch({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "5"}}).distributed());
}

TEST(Launch, OneTorchrunVariableRequiresAllFour) {
  const std::string e = launch_error({{"RANK", "0"}, {"MASTER_PORT", "29500"}});
  EXPECT_NE(e.find("WORLD_SIZE, MASTER_ADDR not set"), std::string::npos) << e;
  EXPECT_NE(
      launch_error({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}).find("RANK='x'"),
      std::string::npos);
  EXPECT_NE(launch_error({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
                .find("RANK=2 is not below WORLD_SIZE=2"),
            std::string::npos);
  EXPECT_NE(launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}})
                .find("MASTER_PORT"),
            std::string::npos);
}

TEST(Launch, SlurmVariablesAndTorchrunWins) {
  const std::map<std::string, std::string> slurm = {{"SLURM_PROCID", "5"},
                                                    {"SLURM_NTASKS", "8"},
                                                    {"SLURM_LOCALID", "1"},
                                                    {"SLURM_TASKS_PER_NODE", "4(x2)"},
                                                    {"SLURM_JOB_NODELIST", "gpu[007-008,012],login1"}};
  const dist::LaunchInfo s = launch(slurm);
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.world_size, 8);
  EXPECT_EQ(s.local_rank, 1);
  EXPECT_EQ(s.local_world_size, 4);
  EXPECT_EQ(s.master_addr, "gpu007");
  EXPECT_EQ(s.port, 29500);
  auto with_master = slurm;
  with_master["MASTER_ADDR"] = "head";
  EXPECT_EQ(launch(with_master).master_addr, "head");
  auto both = slurm;
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "9"}})
    both[k] = v;
  EXPECT_EQ(launch(both).launcher, "torchrun");
  EXPECT_EQ(launch(both).world_size, 2);
  EXPECT_FALSE(launch({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).distributed());
  EXPECT_EQ(dist::first_slurm_host("n1,n2"), "n1");
  EXPECT_EQ(dist::first_slurm_host("rack[2-3]-gpu[01-04]"), "rack2-gpu[01-04]");
}

// With a group of one, the buckets hand back each parameter's own gradient: once per backward even for a parameter
// used twice, none for a parameter backward did not reach.
TEST(GradientReducer, SumsEveryGradientOnceAndLeavesUnusedParametersAlone) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> params;
  for (int i = 0; i < 5; ++i) params.push_back(torch::randn({7, 3}).requires_grad_(true));
  dist::Group one;
  dist::GradientReducer reducer(params, one, /*bucket_bytes=*/64);  // several buckets
  EXPECT_GE(reducer.num_buckets(), 3);
  const torch::Tensor x = torch::randn({4, 7});
  auto loss_of = [&] {
    torch::Tensor h = x.matmul(params[0]);
    h = h + x.matmul(params[0]).sin();  // params[0] used twice
    for (int i = 1; i < 4; ++i) h = h * x.matmul(params[i]).tanh();
    return h.square().sum();  // params[4] unused
  };
  loss_of().backward();
  std::vector<torch::Tensor> expected;
  for (auto& p : params) {
    expected.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    p.mutable_grad() = torch::Tensor();
  }
  for (int round = 0; round < 2; ++round) {
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    reducer.prepare();
    loss_of().backward();
    reducer.finish();
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(torch::equal(params[i].grad(), expected[i])) << i;
    EXPECT_FALSE(params[4].grad().defined());
  }
}

// ------------------------------------------------------------------ real ranks
// A dataset of random 16-token puzzles over vocab 7, 64 training and 20 test examples (20 is not a multiple of the
// batch, so the sharded evaluation has padded rows), with 8 puzzle identifiers.
std::string make_dataset(const std::string& out) {
  data::DatasetFolder folder(out);
  data::DatasetMetadata meta;
  meta.vocab_size = 7;
  meta.num_puzzle_identifiers = 9;
  std::mt19937_64 rng(11);
  for (const char* split : {"train", "test"}) {
    data::SplitBuilder b(16);
    const int n = std::string(split) == "train" ? 64 : 20;
    for (int i = 0; i < n; ++i) {
      std::vector<uint8_t> x(16), y(16);
      for (int c = 0; c < 16; ++c) {
        x[c] = static_cast<uint8_t>(1 + rng() % 6);
        y[c] = static_cast<uint8_t>(1 + (x[c] + i % 3) % 6);
      }
      b.add_example(x, y);
      b.end_puzzle(1 + i % 8);
      b.end_group();
    }
    b.write(folder.split_dir(split), meta);
  }
  folder.commit();
  return out;
}

struct Proc {
  pid_t pid = -1;
  std::string log;
};

// Starts `hrm ARGS` with the given rank variables (none: one process); output to LOG.
Proc start(const std::vector<std::string>& args, const std::map<std::string, std::string>& vars,
           const std::string& log) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string v = *e, name = v.substr(0, v.find('='));
    if (name != "RANK" && name != "WORLD_SIZE" && name != "MASTER_ADDR" && name != "MASTER_PORT" &&
        name != "LOCAL_RANK" && name != "LOCAL_WORLD_SIZE" && name.rfind("SLURM_", 0) != 0)
      env.push_back(v);
  }
  for (const auto& [k, v] : vars) env.push_back(k + "=" + v);
  std::vector<std::string> a = {HRM_CLI_PATH, "--threads", "1"};
  a.insert(a.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  Proc p;
  p.log = log;
  EXPECT_EQ(posix_spawn(&p.pid, HRM_CLI_PATH, &fa, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&fa);
  return p;
}

// Exit status, or -1 after `timeout_s` (the process is then killed).
int finish(Proc& p, double timeout_s = 600) {
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (::waitpid(p.pid, &status, WNOHANG) == 0) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_log(const Proc& p) { return read_file(p.log); }

// `hrm train ARGS` on `world` ranks of this machine (1: one process without rank variables); every exit status.
std::vector<int> run_ranks(int world, const std::vector<std::string>& args, const std::string& log_prefix) {
  std::vector<Proc> procs;
  const std::string port = std::to_string(dist::free_local_port());  // its own: ctest runs two such tests at once
  for (int r = 0; r < world; ++r) {
    std::map<std::string, std::string> vars;
    if (world > 1)
      vars = {{"RANK", std::to_string(r)},       {"WORLD_SIZE", std::to_string(world)},
              {"LOCAL_RANK", std::to_string(r)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
              {"MASTER_ADDR", "127.0.0.1"},      {"MASTER_PORT", port}};
    procs.push_back(start(args, vars, log_prefix + ".rank" + std::to_string(r) + ".log"));
  }
  std::vector<int> codes;
  for (auto& p : procs) {
    codes.push_back(finish(p));
    if (codes.back() != 0) ADD_FAILURE() << read_log(p);
  }
  return codes;
}

// Elements equal within rtol, |a - b| <= rtol (|b| + max |b|): relative to the element, with a floor relative to
// the tensor's largest element for weights that pass near zero (there two runs whose gradients were summed in
// another order differ by float32 rounding, ~5e-7 after 32 steps, which no elementwise rtol covers); the count of
// those that are not.
int64_t count_different(const torch::Tensor& a, const torch::Tensor& b, double rtol) {
  const torch::Tensor x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  const double floor = y.numel() ? y.abs().max().item<double>() : 0.0;
  return ((x - y).abs() > rtol * (y.abs() + floor)).sum().item<int64_t>();
}

std::vector<nlohmann::json> metric_rows(const std::string& run) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(read_file(run + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

class TwoRanks : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = make_dataset(dir_.file("data"));
    // 60 s instead of 300: a rank that never arrives fails the test within a minute (CI ran 2 of these at once).
    config_ = test::write_toy_config(dir_.str(), data_, "dist:\n  timeout_s: 60\n");
    // A q head that makes samples halt at different segments (a fresh one never halts before halt_max_steps).
    TrainConfig c = TrainConfig::load(config_, settings_);
    ModelConfig m = c.arch;
    m.batch_size = 16;
    m.seq_len = 16;
    m.vocab_size = 7;
    m.num_puzzle_identifiers = 9;
    torch::manual_seed(3);
    ACTModel model = make_model(m);
    {
      torch::NoGradGuard g;
      for (auto& item : model->named_parameters())
        if (item.key().find("q_head") != std::string::npos) item.value().normal_(0, 0.3);
    }
    init_ = dir_.file("init.pt");
    save_checkpoint(init_, model);
    data::PuzzleDataset train_split([&] {
      data::LoaderConfig lc;
      lc.dataset_path = data_;
      lc.global_batch_size = 16;
      return lc;
    }());
    const Batch b = train_split.iteration_batches(0).front().batch;
    // Training-mode halting (evaluation runs every segment): the segment at which each sample first halts.
    model->train();
    torch::NoGradGuard g;
    Carry carry = model->initial_carry(b);
    std::vector<int64_t> first(static_cast<size_t>(b.size()), -1);
    for (int64_t seg = 1; seg <= 4; ++seg) {
      carry = model->forward(carry, b).first;
      const auto halted = carry.halted.to(torch::kBool);
      for (int64_t i = 0; i < b.size(); ++i)
        if (first[static_cast<size_t>(i)] < 0 && halted[i].item<bool>()) first[static_cast<size_t>(i)] = seg;
    }
    const std::set<int64_t> distinct(first.begin(), first.end());
    ASSERT_GE(distinct.size(), 2u) << "every sample halts at the same segment: the test would not test halting";
  }

  std::vector<std::string> args(const std::string& run, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a = {"train", config_, "run_dir=" + run, "init_from=" + init_, "threads=1"};
    a.insert(a.end(), settings_.begin(), settings_.end());
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // The final checkpoints of two runs hold the same weights, EMA and optimizer state; their metrics agree.
  void expect_same_run(const std::string& one, const std::string& two) {
    const LoadedCheckpoint a = read_checkpoint(latest_checkpoint(one)), b = read_checkpoint(latest_checkpoint(two));
    EXPECT_EQ(fs::path(latest_checkpoint(one)).filename(), fs::path(latest_checkpoint(two)).filename());
    int64_t compared = 0;
    auto same = [&](const StateDict& x, const StateDict& y, const std::string& what) {
      for (const auto& [k, v] : x) {
        if (k.rfind("rng.", 0) == 0 || k == "train.elapsed_s" || k == "train.world_size") continue;
        // The carried states are outputs of 16 recurrent updates per sample, not trained values: their agreement
        // shows in the logged metrics below; the rest of the carry (steps, halting, data) must be equal.
        if (k == "carry.z_H" || k == "carry.z_L") continue;
        ASSERT_TRUE(y.count(k)) << what << " " << k;
        if (v.scalar_type() == torch::kBool || !v.is_floating_point()) {
          EXPECT_TRUE(torch::equal(v, y.at(k))) << what << " " << k;
          continue;
        }
        compared += v.numel();
        // Weights and their EMA at rtol 1e-5; the optimizer's moments are gradient statistics, compared as
        // verify-reference compares gradients (|a - b| <= 1e-5 + 1e-4 |b|).
        const bool moment = k.rfind("adam.", 0) == 0;
        const int64_t differ =
            moment
                ? ((y.at(k).to(torch::kDouble) - v.to(torch::kDouble)).abs() > 1e-5 + 1e-4 * v.to(torch::kDouble).abs())
                      .sum()
                      .item<int64_t>()
                : count_different(y.at(k), v, 1e-5);
        EXPECT_EQ(differ, 0) << what << " " << k << ": max |diff| " << (y.at(k) - v).abs().max().item<double>();
      }
    };
    same(a.model, b.model, "weights");
    same(a.extra, b.extra, "extra");
    EXPECT_GT(compared, 10000);
    const auto ra = metric_rows(one), rb = metric_rows(two);
    ASSERT_EQ(ra.size(), rb.size());
    int evals = 0;
    for (size_t i = 0; i < ra.size(); ++i) {
      evals += ra[i].value("split", "") == "eval";
      for (const auto& [k, v] : ra[i].items()) {
        if (k == "samples_per_s" || k == "elapsed_s" || !v.is_number()) continue;
        ASSERT_TRUE(rb[i].contains(k)) << k;
        const double x = v.get<double>(), y = rb[i][k].get<double>();
        EXPECT_LE(std::abs(x - y), 1e-6 + 1e-4 * std::abs(x)) << "row " << i << " " << k;
      }
    }
    EXPECT_EQ(evals, 2);
  }

  TempDir dir_;
  std::string data_, config_, init_;
  // 32 steps of global batch 16 (4 per epoch), an evaluation every 4 epochs, exploration 0.1 (the toy arch's).
  const std::vector<std::string> settings_ = {"ema=true",
                                              "ema_rate=0.9",
                                              "epochs=8",
                                              "eval_interval=4",
                                              "global_batch_size=16",
                                              "arch.puzzle_emb_ndim=32",
                                              "arch.hidden_size=32",
                                              "arch.halt_max_steps=4",
                                              "arch.forward_dtype=float32"};
};

TEST_F(TwoRanks, TrainLikeOneProcessWithThePuzzleEmbeddingEmaAndExploration) {
  run_ranks(1, args(dir_.file("one")), dir_.file("one"));
  run_ranks(2, args(dir_.file("two")), dir_.file("two"));
  expect_same_run(dir_.file("one"), dir_.file("two"));
  // Rank 0 alone writes.
  EXPECT_TRUE(fs::exists(dir_.file("two/train.log")));
  EXPECT_NE(read_file(dir_.file("two/train.log")).find("2 ranks (torchrun, gloo)"), std::string::npos);
}

// WORLD_SIZE=1 with an explicit dist.backend joins a group of one (how NCCL is checked on one GPU): every collective
// runs through the backend, and the run equals the plain single process.
TEST_F(TwoRanks, AGroupOfOneTrainsLikeOneProcess) {
  run_ranks(1, args(dir_.file("one")), dir_.file("one"));
  Proc p = start(args(dir_.file("group1"), {"dist.backend=gloo"}),
                 {{"RANK", "0"},
                  {"WORLD_SIZE", "1"},
                  {"MASTER_ADDR", "127.0.0.1"},
                  {"MASTER_PORT", std::to_string(dist::free_local_port())}},
                 dir_.file("group1.log"));
  ASSERT_EQ(finish(p), 0) << read_log(p);
  EXPECT_NE(read_file(dir_.file("group1/train.log")).find("1 ranks (torchrun, gloo)"), std::string::npos);
  expect_same_run(dir_.file("one"), dir_.file("group1"));
}

TEST_F(TwoRanks, StopAndResumeWithTheSameAndAnotherWorldSize) {
  run_ranks(1, args(dir_.file("one")), dir_.file("one"));
  const std::string run = dir_.file("resumed");
  run_ranks(2, args(run, {"max_steps=13"}), run + "_a");
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_13.pt"));
  run_ranks(2, {"train", "--resume", run, "threads=1", "max_steps=22"}, run + "_b");
  EXPECT_TRUE(fs::exists(run + "/checkpoints/step_22.pt"));
  run_ranks(1, {"train", "--resume", run, "threads=1"}, run + "_c");
  expect_same_run(dir_.file("one"), run);
}

TEST_F(TwoRanks, ADeadRankStopsTheOthersAndTheRunResumes) {
  const std::string run = dir_.file("killed");
  const std::string port = std::to_string(dist::free_local_port());
  std::vector<Proc> procs;
  for (int r = 0; r < 2; ++r)
    procs.push_back(
        start(args(run, {"epochs=4000", "eval_interval=0", "checkpoint_every_steps=5"}),
              {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}},
              run + ".rank" + std::to_string(r) + ".log"));
  // Kill rank 1 once a periodic checkpoint exists.
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(run + "/checkpoints/step_10.pt") &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 120)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(run + "/checkpoints/step_10.pt")) << read_log(procs[0]);
  ::kill(procs[1].pid, SIGKILL);
  const auto killed = std::chrono::steady_clock::now();
  const int code = finish(procs[0], 60);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  finish(procs[1]);
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1) << "rank 0 did not stop within 60 s of its peer's death";
  EXPECT_LT(took, 30);
  EXPECT_NE(read_log(procs[0]).find("distributed"), std::string::npos) << read_log(procs[0]);
  // The run continues from its last checkpoint.
  const std::string last = latest_checkpoint(run);
  const std::vector<int> codes = run_ranks(2, {"train", "--resume", run, "threads=1", "max_steps=30"}, run + "_r");
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
  EXPECT_NE(read_file(run + "/train.log").find("resumed " + last), std::string::npos);
}

TEST(Distributed, AMissingPeerIsAnErrorWithinTheTimeout) {
  TempDir dir;
  const std::string data = make_dataset(dir.file("data"));
  test::write_toy_config(dir.str(), data, "dist:\n  timeout_s: 3\n");
  const auto t0 = std::chrono::steady_clock::now();
  Proc p = start({"train", dir.file("configs/toy.yaml"), "run_dir=" + dir.file("run")},
                 {{"RANK", "1"},
                  {"WORLD_SIZE", "2"},
                  {"MASTER_ADDR", "127.0.0.1"},
                  {"MASTER_PORT", std::to_string(dist::free_local_port())}},
                 dir.file("alone.log"));
  const int code = finish(p, 60);
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30);
  EXPECT_NE(read_log(p).find("rendezvous at 127.0.0.1"), std::string::npos) << read_log(p);
}

}  // namespace
}  // namespace hrm
