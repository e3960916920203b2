#include "hrm/train/trainer.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "hrm/data/dataset.h"
#include "hrm/eval/evaluate.h"
#include "hrm/optim/optimizers.h"
#include "hrm/train/state_dict.h"
#include "hrm/train/train_step.h"
#include "hrm/util/error.h"
#include "hrm/util/memory.h"

namespace hrm {
namespace {
namespace fs = std::filesystem;
using Json = nlohmann::json;

std::atomic<int> g_stop_signal{0};
void on_signal(int sig) { g_stop_signal = sig; }

// Installs SIGINT/SIGTERM handlers for the duration of a run.
struct SignalScope {
  using Handler = void (*)(int);
  Handler old_int, old_term;
  SignalScope() {
    g_stop_signal = 0;
    old_int = std::signal(SIGINT, on_signal);
    old_term = std::signal(SIGTERM, on_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
};

const std::vector<std::string> kCsvColumns = {"split", "step", "epoch", "lr", "samples_per_s", "loss", "count",
                                              "accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss",
                                              "q_halt_loss", "q_continue_loss", "valid_solutions"};

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& dir) : jsonl_(dir + "/metrics.jsonl"), csv_(dir + "/metrics.csv") {}

  // Keeps only rows up to `step` (resume), then appends from there.
  void truncate_after(int64_t step) {
    for (const std::string* path : {&jsonl_, &csv_}) {
      if (!fs::exists(*path)) continue;
      std::ifstream in(*path);
      std::string line, kept;
      bool header = path == &csv_;
      while (std::getline(in, line)) {
        if (header) {
          kept += line + "\n";
          header = false;
          continue;
        }
        int64_t s = -1;
        if (path == &jsonl_) {
          try {
            s = Json::parse(line).at("step").get<int64_t>();
          } catch (const std::exception&) {
            continue;
          }
        } else {
          const auto c1 = line.find(','), c2 = line.find(',', c1 + 1);
          s = std::stoll(line.substr(c1 + 1, c2 - c1 - 1));
        }
        if (s <= step) kept += line + "\n";
      }
      write_file_atomic(*path, kept);
    }
  }

  void write(const std::string& split, int64_t step, double epoch, const std::map<std::string, double>& m) {
    Json j = {{"split", split}, {"step", step}, {"epoch", epoch}};
    for (const auto& [k, v] : m) j[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
    std::ofstream(jsonl_, std::ios::app) << j.dump() << "\n";
    const bool fresh = !fs::exists(csv_);
    std::ofstream csv(csv_, std::ios::app);
    if (fresh) {
      for (size_t i = 0; i < kCsvColumns.size(); ++i) csv << (i ? "," : "") << kCsvColumns[i];
      csv << "\n";
    }
    csv << split << "," << step << "," << epoch;
    for (size_t i = 3; i < kCsvColumns.size(); ++i) {
      csv << ",";
      auto it = m.find(kCsvColumns[i]);
      if (it != m.end()) csv << std::setprecision(9) << it->second;
    }
    csv << "\n";
  }

 private:
  std::string jsonl_, csv_;
};

std::string timestamp() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

std::string format_duration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return buf;
}

class Trainer {
 public:
  Trainer(TrainConfig config, bool progress) : cfg_(std::move(config)), progress_(progress) {}

  TrainOutcome run(const std::string& resume_checkpoint) {
    set_threads(cfg_.threads);
    device_ = torch::Device(resolve_device(cfg_.device));
    data::LoaderConfig lc;
    lc.dataset_path = cfg_.data_path;
    lc.split = "train";
    lc.global_batch_size = cfg_.global_batch_size;
    lc.epochs_per_iter = cfg_.eval_interval ? cfg_.eval_interval : cfg_.epochs;
    lc.seed = cfg_.seed;
    train_ds_ = std::make_shared<data::PuzzleDataset>(lc);
    const auto& meta = train_ds_->metadata();
    if (fs::exists(cfg_.data_path + "/test")) {
      data::LoaderConfig tc = lc;
      tc.split = "test";
      tc.test_mode = true;
      test_ds_ = std::make_shared<data::PuzzleDataset>(tc);
    }
    ModelConfig mc = cfg_.arch;
    mc.batch_size = cfg_.global_batch_size;
    mc.seq_len = meta.seq_len;
    mc.vocab_size = meta.vocab_size;
    mc.num_puzzle_identifiers = meta.num_puzzle_identifiers;
    mc.validate(cfg_.run_dir + "/config.yaml (arch)");
    loss_type_ = loss_type_from_string(cfg_.loss_type);

    total_steps_ = static_cast<int64_t>(static_cast<double>(cfg_.epochs) * static_cast<double>(meta.total_groups) *
                                        meta.mean_puzzle_examples / static_cast<double>(cfg_.global_batch_size));
    check(total_steps_ >= 1, cfg_.data_path + ": the run would have no training step (epochs * groups * examples per "
                             "puzzle < global_batch_size)");
    epochs_per_iter_ = lc.epochs_per_iter;
    total_iters_ = cfg_.epochs / epochs_per_iter_;

    torch::manual_seed(cfg_.seed);
    model_ = HRM(mc);
    model_->to(device_);
    optimizer_ = std::make_unique<HRMOptimizer>(
        model_, OptimizerConfig{cfg_.lr, cfg_.weight_decay, cfg_.beta1, cfg_.beta2, cfg_.puzzle_emb_lr,
                                cfg_.puzzle_emb_weight_decay});
    log_ = std::make_unique<MetricsLog>(cfg_.run_dir);
    if (!resume_checkpoint.empty()) restore(resume_checkpoint);
    else write_file_atomic(cfg_.run_dir + "/config.yaml", cfg_.to_yaml());
    log_->truncate_after(step_);
    return loop();
  }

 private:
  TrainOutcome loop() {
    SignalScope signals;
    TrainOutcome outcome;
    outcome.run_dir = cfg_.run_dir;
    outcome.total_steps = total_steps_;
    const auto start = std::chrono::steady_clock::now();
    const bool tty = progress_ && ::isatty(STDERR_FILENO);
    const int64_t log_every = cfg_.log_every > 0 ? cfg_.log_every : std::max<int64_t>(1, total_steps_ / 100);
    std::printf("training %s: %lld steps (%lld epochs, %lld per evaluation), batch %lld, %lld parameters, %s, %d threads\n",
                cfg_.run_dir.c_str(), (long long)total_steps_, (long long)cfg_.epochs, (long long)epochs_per_iter_,
                (long long)cfg_.global_batch_size, (long long)count_parameters(), device_.str().c_str(),
                torch::get_num_threads());
    std::fflush(stdout);

    data::BackgroundLoader loader(train_ds_, iteration_, 8, total_iters_ - iteration_);
    int64_t skip = batch_in_iter_;
    std::string stop_reason;
    auto last = std::chrono::steady_clock::now();
    double ema_rate = 0;
    while (step_ < total_steps_) {
      int64_t it = 0;
      std::optional<data::LoadedBatch> lb = loader.next(&it);
      if (!lb) break;
      if (it != iteration_) {  // an iteration ended: evaluate and checkpoint as "at the start of iteration it"
        iteration_ = it;
        batch_in_iter_ = 0;
        end_of_iteration(outcome);
      }
      if (skip > 0) {  // resuming inside an iteration: these batches were trained on before
        --skip;
        continue;
      }
      const std::map<std::string, double> m = train_step(lb->batch);
      ++batch_in_iter_;
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - last).count();
      last = now;
      const double rate = static_cast<double>(cfg_.global_batch_size) / std::max(dt, 1e-9);
      ema_rate = ema_rate == 0 ? rate : 0.9 * ema_rate + 0.1 * rate;
      std::map<std::string, double> row = m;
      row["samples_per_s"] = rate;
      log_->write("train", step_, epoch(), row);
      if (!std::isfinite(m.at("loss"))) {
        std::fprintf(stderr, "\nhrm train: loss is %f at step %lld: stopping (the last good checkpoint is kept)\n",
                     m.at("loss"), (long long)step_);
        throw Error("non-finite loss at step " + std::to_string(step_));
      }
      const double eta = static_cast<double>(total_steps_ - step_) * cfg_.global_batch_size / std::max(ema_rate, 1e-9);
      if (tty) {
        std::fprintf(stderr, "\rstep %lld/%lld | %.1f samples/s | eta %s | loss %.4f | acc %.3f | exact %.3f   ",
                     (long long)step_, (long long)total_steps_, ema_rate, format_duration(eta).c_str(), m.at("loss"),
                     m.at("accuracy"), m.at("exact_accuracy"));
      } else if (progress_ && (step_ % log_every == 0 || step_ == 1)) {
        std::printf("step %lld/%lld  %.1f samples/s  eta %s  loss %.4f  acc %.3f  exact %.3f  lr %.3g\n",
                    (long long)step_, (long long)total_steps_, ema_rate, format_duration(eta).c_str(), m.at("loss"),
                    m.at("accuracy"), m.at("exact_accuracy"), m.at("lr"));
        std::fflush(stdout);
      }
      if (g_stop_signal) stop_reason = g_stop_signal == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)";
      else if (cfg_.max_steps > 0 && step_ >= cfg_.max_steps) stop_reason = "max_steps reached";
      else if (cfg_.time_limit_minutes > 0 &&
               std::chrono::duration<double>(now - start).count() >= cfg_.time_limit_minutes * 60)
        stop_reason = "time limit reached";
      if (!stop_reason.empty()) break;
    }
    if (tty) std::fprintf(stderr, "\n");
    if (!stop_reason.empty()) {
      const std::string ck = save();
      std::printf("%s at step %lld: checkpoint %s\n", stop_reason.c_str(), (long long)step_, ck.c_str());
      outcome.interrupted = true;
      if (stop_reason == "time limit reached") evaluate_now(outcome);
    } else {
      end_of_iteration(outcome);
      outcome.finished = true;
    }
    outcome.steps = step_;
    return outcome;
  }

  std::map<std::string, double> train_step(const Batch& cpu_batch) {
    ++step_;
    const double lr = optim::cosine_schedule_with_warmup(step_, cfg_.lr, cfg_.lr_warmup_steps, total_steps_,
                                                         cfg_.lr_min_ratio);
    const double plr = optim::cosine_schedule_with_warmup(step_, cfg_.puzzle_emb_lr, cfg_.lr_warmup_steps,
                                                          total_steps_, cfg_.lr_min_ratio);
    const Batch batch = cpu_batch.to(device_);
    if (!carry_) carry_ = model_->initial_carry(batch);
    model_->train();
    StepResult r = forward_backward(model_, *carry_, batch, loss_type_, static_cast<double>(cfg_.global_batch_size));
    optimizer_->step(lr, plr);
    optimizer_->zero_grad();
    carry_ = std::move(r.carry);
    // One host sync for all metrics.
    std::vector<std::string> keys;
    std::vector<torch::Tensor> values;
    for (const auto& [k, v] : r.loss.metrics) {
      keys.push_back(k);
      values.push_back(v.to(torch::kDouble));
    }
    keys.push_back("loss");
    values.push_back(r.loss.loss.detach().to(torch::kDouble));
    const torch::Tensor all = torch::stack(values).cpu();
    std::map<std::string, double> m;
    for (size_t i = 0; i < keys.size(); ++i) m[keys[i]] = all[static_cast<int64_t>(i)].item<double>();
    const double count = std::max(1.0, m["count"]);
    for (auto& [k, v] : m) {
      if (k == "count") continue;
      v /= (k.size() >= 4 && k.compare(k.size() - 4, 4, "loss") == 0) ? static_cast<double>(cfg_.global_batch_size) : count;
    }
    m["lr"] = lr;
    return m;
  }

  double epoch() const {
    return static_cast<double>(step_) * cfg_.global_batch_size /
           (static_cast<double>(train_ds_->metadata().total_groups) * train_ds_->metadata().mean_puzzle_examples);
  }

  void evaluate_now(TrainOutcome& outcome) {
    if (!test_ds_) return;
    EvalOutput e = evaluate(model_, *test_ds_, loss_type_, progress_ && ::isatty(STDERR_FILENO));
    add_checker_metrics(detect_task_kind(cfg_.data_path, test_ds_->metadata()), e, &e.metrics);
    log_->write("eval", step_, epoch(), e.metrics);
    std::printf("eval at step %lld: exact_accuracy %.4f  accuracy %.4f  q_halt_accuracy %.4f  steps %.2f%s\n",
                (long long)step_, e.metrics["exact_accuracy"], e.metrics["accuracy"], e.metrics["q_halt_accuracy"],
                e.metrics["steps"],
                e.metrics.count("valid_solutions")
                    ? ("  valid_solutions " + std::to_string(e.metrics["valid_solutions"])).c_str()
                    : "");
    std::fflush(stdout);
    outcome.last_eval = e.metrics;
  }

  void end_of_iteration(TrainOutcome& outcome) {
    evaluate_now(outcome);
    if (cfg_.checkpoint_every_eval || step_ >= total_steps_) save();
  }

  int64_t count_parameters() {
    int64_t n = 0;
    for (const auto& p : model_->parameters()) n += p.numel();
    return n;
  }

  std::string save() {
    const std::string dir = cfg_.run_dir + "/checkpoints";
    fs::create_directories(dir);
    StateDict extra;
    for (const auto& [k, v] : optimizer_->adam().state_dict()) extra["adam." + k] = v;
    extra["train.step"] = torch::tensor(step_, torch::kLong);
    extra["train.iteration"] = torch::tensor(iteration_, torch::kLong);
    extra["train.batch_in_iter"] = torch::tensor(batch_in_iter_, torch::kLong);
    {
      auto gen = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(gen.mutex());
      extra["rng.state"] = gen.get_state();
    }
    if (carry_) {
      extra["carry.z_H"] = carry_->inner.z_H;
      extra["carry.z_L"] = carry_->inner.z_L;
      extra["carry.steps"] = carry_->steps;
      extra["carry.halted"] = carry_->halted;
      extra["carry.inputs"] = carry_->current.inputs;
      extra["carry.labels"] = carry_->current.labels;
      extra["carry.puzzle_identifiers"] = carry_->current.puzzle_identifiers;
    }
    const std::string path = dir + "/step_" + std::to_string(step_) + ".pt";
    save_checkpoint(path, model_, extra, {{"train_config", cfg_.to_yaml()}});
    // Keep the last K.
    std::vector<std::pair<int64_t, fs::path>> all;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("step_", 0) == 0 && e.path().extension() == ".pt") all.emplace_back(std::stoll(n.substr(5)), e.path());
    }
    std::sort(all.begin(), all.end());
    for (size_t i = 0; i + static_cast<size_t>(cfg_.keep_checkpoints) < all.size(); ++i) fs::remove(all[i].second);
    return path;
  }

  void restore(const std::string& path) {
    LoadedCheckpoint ck = read_checkpoint(path);
    load_model_state(model_, ck.model, path);
    auto get = [&](const std::string& k) {
      auto it = ck.extra.find(k);
      if (it == ck.extra.end()) throw Error(path + ": not a training checkpoint (no '" + k + "')");
      return it->second;
    };
    std::map<std::string, torch::Tensor> adam;
    for (const auto& [k, v] : ck.extra)
      if (k.rfind("adam.", 0) == 0) adam[k.substr(5)] = v.to(device_);
    optimizer_->adam().load_state_dict(adam, path);
    step_ = get("train.step").item<int64_t>();
    iteration_ = get("train.iteration").item<int64_t>();
    batch_in_iter_ = get("train.batch_in_iter").item<int64_t>();
    {
      auto gen = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(get("rng.state"));
    }
    if (ck.extra.count("carry.z_H")) {
      const auto dtype = model_->config().dtype();
      carry_ = Carry{InnerCarry{get("carry.z_H").to(device_, dtype), get("carry.z_L").to(device_, dtype)},
                     get("carry.steps").to(device_), get("carry.halted").to(device_),
                     Batch{get("carry.inputs").to(device_), get("carry.labels").to(device_),
                           get("carry.puzzle_identifiers").to(device_)}};
    }
    std::printf("resumed %s at step %lld\n", path.c_str(), (long long)step_);
  }

  TrainConfig cfg_;
  bool progress_;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<data::PuzzleDataset> train_ds_, test_ds_;
  LossType loss_type_ = LossType::StablemaxCrossEntropy;
  HRM model_{nullptr};
  std::unique_ptr<HRMOptimizer> optimizer_;
  std::unique_ptr<MetricsLog> log_;
  std::optional<Carry> carry_;
  int64_t step_ = 0, iteration_ = 0, batch_in_iter_ = 0, total_steps_ = 0, epochs_per_iter_ = 1, total_iters_ = 1;
};

}  // namespace

std::string resolve_device(const std::string& device) {
  if (device == "auto") return torch::cuda::is_available() ? "cuda" : "cpu";
  if (device.rfind("cuda", 0) == 0 && !torch::cuda::is_available())
    throw Error("device '" + device + "' requested, but this LibTorch build has no usable CUDA");
  return device;
}

void set_threads(int64_t threads) {
  const int n = threads > 0 ? static_cast<int>(threads)
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  keep_freed_cpu_memory();
}

std::string latest_checkpoint(const std::string& run_dir) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  int64_t best = -1;
  std::string path;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("step_", 0) != 0 || e.path().extension() != ".pt") continue;
      const int64_t s = std::stoll(n.substr(5));
      if (s > best) {
        best = s;
        path = e.path().string();
      }
    }
  if (path.empty()) throw Error(run_dir + ": no checkpoint found in " + dir.string());
  return path;
}

TrainOutcome train(TrainConfig config, bool progress) {
  if (config.run_dir.empty()) config.run_dir = "runs/" + (config.name.empty() ? "hrm" : config.name) + "-" + timestamp();
  check(!config.data_path.empty(), "train: data_path is not set (give data_path=DIR)");
  if (fs::exists(config.run_dir + "/checkpoints") && !fs::is_empty(config.run_dir + "/checkpoints"))
    throw Error(config.run_dir + ": the run folder already has checkpoints (use hrm train --resume " + config.run_dir + ")");
  fs::create_directories(config.run_dir);
  for (const char* f : {"/metrics.jsonl", "/metrics.csv"}) fs::remove(config.run_dir + f);
  return Trainer(std::move(config), progress).run("");
}

TrainOutcome resume_training(const std::string& run_dir, const std::vector<std::string>& overrides, bool progress) {
  const std::string checkpoint = latest_checkpoint(run_dir);
  const std::string cfg_path = run_dir + "/config.yaml";
  TrainConfig c = TrainConfig::from_yaml(read_file(cfg_path), cfg_path);
  c.max_steps = 0;  // stop conditions belong to one invocation, not to the run
  c.time_limit_minutes = 0;
  for (const auto& o : overrides) c.apply_override(o, "command line");
  c.run_dir = run_dir;
  c.validate(cfg_path);
  return Trainer(std::move(c), progress).run(checkpoint);
}

}  // namespace hrm
