#include "hrm/train/trainer.h"

#include <unistd.h>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "hrm/data/loader.h"
#include "hrm/dist/grad_reducer.h"
#include "hrm/dist/group.h"
#include "hrm/dist/launch.h"
#include "hrm/model/registry.h"
#include "hrm/nn/fused.h"
#include "hrm/optim/ema.h"
#include "hrm/optim/model_optimizer.h"
#include "hrm/train/checkpoint.h"
#include "hrm/train/metrics_log.h"
#include "hrm/train/train_step.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/log.h"
#include "hrm/util/memory.h"
#include "hrm/util/signals.h"
#include "hrm/version.h"

namespace hrm {
namespace {
namespace fs = std::filesystem;

std::string timestamp() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", std::localtime(&t));
  return buf;
}

std::string format_duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return buf;
}

// This rank's device: with several ranks on a node, "cuda" is the GPU of LOCAL_RANK.
std::string rank_device(const std::string& device, const dist::LaunchInfo& where) {
  const std::string d = resolve_device(device);
  return where.distributed() && d == "cuda" ? "cuda:" + std::to_string(where.local_rank) : d;
}

// Joins the data-parallel run this process was launched into; one process when no launcher variable is set. A
// launched run of one rank with an explicit dist.backend joins a group of one, so that the backend itself runs (the
// NCCL check on a single GPU).
std::shared_ptr<dist::Group> join_run(const dist::LaunchInfo& where, const TrainConfig& c) {
  const bool one_rank_group = !where.launcher.empty() && c.dist_backend != "auto";
  if (!where.distributed() && !one_rank_group) return std::make_shared<dist::Group>();
  dist::GroupOptions o;
  o.backend = c.dist_backend;
  o.timeout_s = c.dist_timeout_s;
  o.cuda = torch::Device(rank_device(c.device, where)).is_cuda();
  auto group = std::make_shared<dist::Group>(where, o);
  if (where.rank != 0) log::set_level(log::Level::warn);  // rank 0 speaks for the run
  return group;
}

class Trainer {
 public:
  Trainer(TrainConfig config, const TrainOptions& options, dist::LaunchInfo where)
      : cfg_(std::move(config)),
        options_(options),
        where_(std::move(where)),
        group_(dist::world()),
        lead_(group_.rank() == 0) {}

  TrainOutcome run(const std::string& resume_checkpoint) {
    if (lead_) log_file_ = std::make_unique<log::FileSink>(cfg_.run_dir + "/train.log");
    try {
      return start_and_train(resume_checkpoint);
    } catch (const std::exception& e) {
      if (log_file_) log_file_->record_error(e.what());
      throw;
    }
  }

 private:
  TrainOutcome start_and_train(const std::string& resume_checkpoint) {
    // Ranks sharing a node share its cores.
    set_threads(cfg_.threads > 0 || where_.local_world_size <= 1
                    ? cfg_.threads
                    : std::max<int64_t>(
                          1, static_cast<int64_t>(std::thread::hardware_concurrency()) / where_.local_world_size));
    device_ = torch::Device(rank_device(cfg_.device, where_));
    data::LoaderConfig lc;
    lc.dataset_path = cfg_.data_path;
    lc.split = "train";
    lc.global_batch_size = cfg_.global_batch_size;
    lc.epochs_per_iter = cfg_.eval_interval ? cfg_.eval_interval : cfg_.epochs;
    lc.seed = cfg_.seed;
    lc.rank = group_.rank();
    lc.world_size = group_.world_size();
    train_ds_ = std::make_shared<data::PuzzleDataset>(lc);
    const auto& meta = train_ds_->metadata();
    ModelConfig mc = cfg_.arch;
    mc.batch_size = cfg_.global_batch_size;
    mc.seq_len = meta.seq_len;
    mc.vocab_size = meta.vocab_size;
    mc.num_puzzle_identifiers = meta.num_puzzle_identifiers;
    const std::string arch_source = (cfg_.source.empty() ? cfg_.run_dir + "/config.yaml" : cfg_.source) + " (arch)";
    mc.validate(arch_source);
    loss_type_ = loss_type_from_string(cfg_.loss_type);

    total_steps_ = static_cast<int64_t>(static_cast<double>(cfg_.epochs) * static_cast<double>(meta.total_groups) *
                                        meta.mean_puzzle_examples / static_cast<double>(cfg_.global_batch_size));
    check(total_steps_ >= 1, cfg_.data_path +
                                 ": the run would have no training step (epochs * groups * examples per "
                                 "puzzle < global_batch_size)");
    epochs_per_iter_ = lc.epochs_per_iter;
    total_iters_ = cfg_.epochs / epochs_per_iter_;

    torch::manual_seed(cfg_.seed);
    set_auto_dtype_device(device_.is_cuda());
    try {
      model_ = make_model(mc);
    } catch (const Error& e) {  // a model's own requirement (hrm needs H_layers >= 1): name the config
      throw Error(arch_source + ": " + e.what());
    }
    model_->to(device_);
    if (resume_checkpoint.empty() && !cfg_.init_from.empty()) init_weights(cfg_.init_from);
    broadcast_weights();
    // Frozen weights get no gradient, so AdamATan2 (which skips gradient-less parameters) leaves them untouched.
    if (cfg_.freeze_weights)
      for (auto& p : model_->parameters()) p.requires_grad_(false);
    if (cfg_.ema) ema_ = std::make_unique<EMA>(model_, cfg_.ema_rate);
    optimizer_ =
        std::make_unique<ModelOptimizer>(model_, OptimizerConfig{cfg_.lr, cfg_.weight_decay, cfg_.beta1, cfg_.beta2,
                                                                 cfg_.puzzle_emb_lr, cfg_.puzzle_emb_weight_decay});
    if (group_.connected()) {
      std::vector<torch::Tensor> trained;
      for (const auto& p : model_->parameters())
        if (p.requires_grad()) trained.push_back(p);
      reducer_ = std::make_unique<dist::GradientReducer>(trained, group_,
                                                         static_cast<int64_t>(cfg_.dist_bucket_mb * 1048576.0));
    }
    if (lead_) log_ = std::make_unique<MetricsLog>(cfg_.run_dir);
    if (!resume_checkpoint.empty()) {
      if (lead_) remove_unfinished_checkpoints(cfg_.run_dir);
      restore(resume_checkpoint);
    } else if (lead_) {
      write_file_atomic(cfg_.run_dir + "/config.yaml", cfg_.to_yaml());
    }
    if (resumed_ && step_ >= total_steps_ && eval_logged_step_ == step_) {
      // Its final evaluation and checkpoint are written: evaluating again would only log that row twice.
      log::info(fmt::format("{} finished at step {} of {}: nothing to resume", cfg_.run_dir, step_, total_steps_));
      TrainOutcome done;
      done.run_dir = cfg_.run_dir;
      done.steps = step_;
      done.total_steps = total_steps_;
      done.finished = true;
      return done;
    }
    if (lead_) {
      log_->truncate_after(step_, eval_logged_step_ == step_);
      write_run_info(meta);
    }
    TrainOutcome outcome = loop();
    if (options_.on_end && lead_) options_.on_end(cfg_.run_dir);
    return outcome;
  }

  TrainOutcome loop() {
    StopSignalScope signals;
    TrainOutcome outcome;
    outcome.run_dir = cfg_.run_dir;
    outcome.total_steps = total_steps_;
    const auto start = clock_now();
    loop_start_ = start;
    fit_measuring_ = cfg_.fit_time_limit && cfg_.time_limit_minutes > 0 && !resumed_;
    fit_at_step_ = fit_measuring_ ? step_ + kFitMeasureSteps : -1;
    fit_warm_step_ = fit_measuring_ ? step_ + kFitWarmupSteps : -1;
    planned_steps_ = total_steps_;
    auto last_checkpoint = start;
    const bool tty = options_.progress && lead_ && ::isatty(STDERR_FILENO);
    const int64_t log_every = cfg_.log_every > 0 ? cfg_.log_every : std::max<int64_t>(1, total_steps_ / 100);
    log::info(fmt::format(
        "training {}: {} steps ({} epochs, {} per evaluation), batch {}, {} parameters, {}, {}{}, {} threads{}",
        cfg_.run_dir, total_steps_, cfg_.epochs, epochs_per_iter_, cfg_.global_batch_size, count_parameters(),
        device_.str(), model_->config().forward_dtype_description(),
        device_.is_cpu() && model_->config().dtype() == torch::kBFloat16
            ? std::string(", bfloat16 products by ") + nn::bf16_product_kernels()
            : std::string(),
        torch::get_num_threads(),
        group_.connected() ? fmt::format(" per rank; {} ranks ({}, {}), {} gradient buckets", group_.world_size(),
                                         where_.launcher, group_.backend(), reducer_->num_buckets())
                           : std::string()));

    data::BackgroundLoader loader(train_ds_, iteration_, 8, total_iters_ - iteration_);
    int64_t skip = batch_in_iter_;
    std::string stop_reason;
    auto last = clock_now();
    double ema_rate = 0;
    while (step_ < total_steps_) {
      int64_t it = 0;
      std::optional<data::LoadedBatch> lb = loader.next(&it);
      if (!lb) break;
      if (it != iteration_) {  // an iteration ended: evaluate and checkpoint as "at the start of iteration it"
        iteration_ = it;
        batch_in_iter_ = 0;
        end_of_iteration(outcome);
        if (fit_at_step_ >= 0 && !fit_measuring_) fit_to_time_limit(start);  // evaluations take time too
      }
      if (skip > 0) {  // resuming inside an iteration: these batches were trained on before
        --skip;
        continue;
      }
      const StepReport report = train_step(lb->batch, start, last_checkpoint);
      const std::map<std::string, double>& m = report.metrics;
      ++batch_in_iter_;
      const auto now = clock_now();
      const double dt = std::chrono::duration<double>(now - last).count();
      last = now;
      const double rate = static_cast<double>(cfg_.global_batch_size) / std::max(dt, 1e-9);
      ema_rate = ema_rate == 0 ? rate : 0.9 * ema_rate + 0.1 * rate;
      if (step_ == fit_warm_step_) fit_warm_ = now;
      if (step_ == fit_at_step_) fit_to_time_limit(start);
      std::map<std::string, double> row = m;
      row["samples_per_s"] = rate;
      row["elapsed_s"] = elapsed_seconds();
      if (log_) log_->write("train", step_, epoch(), row);
      if (options_.on_step) options_.on_step(step_, row);
      if (!std::isfinite(m.at("loss"))) {
        if (tty) std::fprintf(stderr, "\n");
        log::error(
            fmt::format("loss is {} at step {}: stopping (the last good checkpoint is kept)", m.at("loss"), step_));
        throw Error("non-finite loss at step " + std::to_string(step_));
      }
      const double eta = static_cast<double>(total_steps_ - step_) * cfg_.global_batch_size / std::max(ema_rate, 1e-9);
      if (tty) {
        std::fprintf(stderr, "\rstep %lld/%lld | %.1f samples/s | eta %s | loss %.4f | acc %.3f | exact %.3f   ",
                     (long long)step_, (long long)total_steps_, ema_rate, format_duration(eta).c_str(), m.at("loss"),
                     m.at("accuracy"), m.at("exact_accuracy"));
      } else if (options_.progress && lead_ && (step_ % log_every == 0 || step_ == 1)) {
        log::info(fmt::format("step {}/{}  {:.1f} samples/s  eta {}  loss {:.4f}  acc {:.3f}  exact {:.3f}  lr {:.3g}",
                              step_, total_steps_, ema_rate, format_duration(eta), m.at("loss"), m.at("accuracy"),
                              m.at("exact_accuracy"), m.at("lr")));
      }
      // Decisions from clocks and signals were agreed on by every rank in train_step.
      if (report.signal)
        stop_reason = stop_signal() == SIGINT    ? "interrupted (SIGINT)"
                      : stop_signal() == SIGTERM ? "terminated (SIGTERM)"
                                                 : "stopped by a signal to another rank";
      else if (cfg_.max_steps > 0 && step_ >= cfg_.max_steps)
        stop_reason = "max_steps reached";
      else if (report.time_up && step_ < total_steps_)  // the schedule's last step: the run is done, not cut off
        stop_reason = "time limit reached";
      if (!stop_reason.empty()) break;
      // Periodic checkpoints: a run killed at any instant loses at most the work since the last one.
      const bool by_steps = cfg_.checkpoint_every_steps > 0 && step_ % cfg_.checkpoint_every_steps == 0;
      if ((by_steps || report.checkpoint_due) && step_ < total_steps_) {
        save();
        last_checkpoint = clock_now();
      }
    }
    if (tty) std::fprintf(stderr, "\n");
    if (!stop_reason.empty()) {
      const std::string ck = save();
      log::info(fmt::format("{} at step {}: checkpoint {}", stop_reason, step_, ck));
      outcome.interrupted = true;
      if (stop_reason == "time limit reached") evaluate_now(outcome);
    } else {
      end_of_iteration(outcome);
      outcome.finished = true;
    }
    outcome.steps = step_;
    return outcome;
  }

  struct StepReport {
    std::map<std::string, double> metrics;                         // summed over ranks, divided as in one process
    bool signal = false, time_up = false, checkpoint_due = false;  // on any rank
  };

  StepReport train_step(const Batch& cpu_batch, std::chrono::steady_clock::time_point start,
                        std::chrono::steady_clock::time_point last_checkpoint) {
    ++step_;
    const double lr =
        optim::cosine_schedule_with_warmup(step_, cfg_.lr, cfg_.lr_warmup_steps, total_steps_, cfg_.lr_min_ratio);
    const double plr = optim::cosine_schedule_with_warmup(step_, cfg_.puzzle_emb_lr, cfg_.lr_warmup_steps, total_steps_,
                                                          cfg_.lr_min_ratio);
    const Batch batch = cpu_batch.to(device_);
    if (!carry_) carry_ = model_->initial_carry(batch);
    model_->train();
    if (reducer_) reducer_->prepare();
    StepResult r = forward_backward(model_, *carry_, batch, loss_type_, static_cast<double>(cfg_.global_batch_size));
    if (reducer_) reducer_->finish();  // every rank now holds the global batch's gradient
    optimizer_->step(lr, plr);
    if (ema_) ema_->update();
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
    // The clocks and signals of every rank travel with the metrics: one all-reduce per step.
    const auto now = clock_now();
    const double flags[3] = {
        stop_signal() ? 1.0 : 0.0,
        // With fit_time_limit the first steps always run: they measure the rate the run is then sized by.
        cfg_.time_limit_minutes > 0 && !fit_measuring_ &&
                std::chrono::duration<double>(now - start).count() >= cfg_.time_limit_minutes * 60
            ? 1.0
            : 0.0,
        cfg_.checkpoint_every_minutes > 0 &&
                std::chrono::duration<double>(now - last_checkpoint).count() >= cfg_.checkpoint_every_minutes * 60
            ? 1.0
            : 0.0};
    for (double f : flags) values.push_back(torch::tensor(f, torch::kDouble).to(device_));
    std::vector<torch::Tensor> summed{torch::stack(values)};
    group_.all_reduce_sum(summed);
    const torch::Tensor all = summed[0].cpu();
    StepReport report;
    const int64_t n = static_cast<int64_t>(keys.size());
    report.signal = all[n].item<double>() > 0;
    report.time_up = all[n + 1].item<double>() > 0;
    report.checkpoint_due = all[n + 2].item<double>() > 0;
    std::map<std::string, double>& m = report.metrics;
    for (size_t i = 0; i < keys.size(); ++i) m[keys[i]] = all[static_cast<int64_t>(i)].item<double>();
    const double count = std::max(1.0, m["count"]);
    for (auto& [k, v] : m) {
      if (k == "count") continue;
      v /= (k.size() >= 4 && k.compare(k.size() - 4, 4, "loss") == 0) ? static_cast<double>(cfg_.global_batch_size)
                                                                      : count;
    }
    m["lr"] = lr;
    return report;
  }

  double epoch() const {
    return static_cast<double>(step_) * cfg_.global_batch_size /
           (static_cast<double>(train_ds_->metadata().total_groups) * train_ds_->metadata().mean_puzzle_examples);
  }

  void evaluate_now(TrainOutcome& outcome) {
    if (!options_.evaluate) return;
    std::optional<SwappedWeights> averaged;  // the published trainer evaluates the EMA
    if (ema_) averaged.emplace(model_, ema_->weights());
    std::map<std::string, double> e;
    try {
      e = options_.evaluate(model_, cfg_);
    } catch (const Interrupted& i) {  // Ctrl-C/SIGTERM during evaluation: nothing partial is logged
      log::info(fmt::format("evaluation at step {} interrupted: {}", step_, i.what()));
      return;
    }
    averaged.reset();
    if (e.empty()) return;
    e["elapsed_s"] = elapsed_seconds();
    if (log_) log_->write("eval", step_, epoch(), e);
    eval_logged_step_ = step_;
    log::info(fmt::format(
        "eval at step {}: exact_accuracy {:.4f}  accuracy {:.4f}  q_halt_accuracy {:.4f}  steps {:.2f}{}", step_,
        e["exact_accuracy"], e["accuracy"], e["q_halt_accuracy"], e["steps"],
        e.count("valid_solutions") ? fmt::format("  valid_solutions {:.6f}", e["valid_solutions"]) : std::string()));
    outcome.last_eval = e;
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

  // Fine-tuning: the weights of another run or a published checkpoint (its EMA when it has one). A puzzle-embedding
  // table of another size (a new puzzle set) is replaced by one whose rows all equal the mean trained row.
  void init_weights(const std::string& path) {
    bool used_ema = false;
    StateDict w = read_weights(path, /*prefer_ema=*/true, &used_ema);
    const std::string key = "inner.puzzle_emb.weights";
    const StateDict mine = model_state(model_);
    auto it = w.find(key);
    if (it != w.end() && mine.count(key) && it->second.dim() == 2 && it->second.size(0) != mine.at(key).size(0) &&
        it->second.size(1) == mine.at(key).size(1)) {
      const int64_t before = it->second.size(0), now = mine.at(key).size(0);
      it->second =
          it->second.to(torch::kFloat).mean(0, /*keepdim=*/true).expand({now, it->second.size(1)}).contiguous();
      log::info(
          fmt::format("init_from {}: {} puzzle identifiers there, {} here: every puzzle embedding starts as the "
                      "mean of the trained ones",
                      path, before, now));
    }
    load_model_state(model_, w, path);
    log::info(fmt::format("init_from {}: started from its {} weights", path, used_ema ? "EMA" : "trained"));
  }

  // RUN_DIR/run_info.json: what the report shows besides the metrics (this invocation's machine and the dataset).
  void write_run_info(const data::DatasetMetadata& meta) {
    nlohmann::json info;
    info["hardware"] = {{"cpu", cpu_description()},
                        {"device", device_.str()},
                        {"threads", torch::get_num_threads()},
                        {"libtorch", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR)},
                        {"hrm", HRM_VERSION_STRING}};
    info["dataset"] = {{"path", cfg_.data_path},
                       {"train examples", train_ds_->num_examples()},
                       {"train groups", meta.total_groups},
                       {"seq_len", meta.seq_len},
                       {"vocab_size", meta.vocab_size},
                       {"puzzle identifiers", meta.num_puzzle_identifiers}};
    info["model"] = {{"name", model_->config().name},
                     {"parameters", count_parameters()},
                     {"forward_dtype", model_->config().forward_dtype},
                     {"resolved_forward_dtype", model_->config().resolved_forward_dtype()}};
    write_file_atomic(cfg_.run_dir + "/run_info.json", info.dump(1) + "\n");
  }

  std::string save() {
    const std::string dir = cfg_.run_dir + "/checkpoints";
    if (lead_) fs::create_directories(dir);
    StateDict extra;
    for (const auto& [k, v] : optimizer_->adam().state_dict()) extra["adam." + k] = v;
    extra["train.step"] = torch::tensor(step_, torch::kLong);
    extra["train.total_steps"] = torch::tensor(total_steps_, torch::kLong);  // fit_time_limit may have shortened it
    extra["train.elapsed_s"] = torch::tensor(elapsed_seconds(), torch::kDouble);
    if (ema_)
      for (const auto& [k, v] : ema_->weights()) extra["ema." + k] = v;
    extra["train.iteration"] = torch::tensor(iteration_, torch::kLong);
    extra["train.batch_in_iter"] = torch::tensor(batch_in_iter_, torch::kLong);
    extra["train.eval_logged"] = torch::tensor(eval_logged_step_ == step_ ? 1 : 0, torch::kLong);
    {
      auto gen = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(gen.mutex());
      extra["rng.state"] = gen.get_state();
    }
    // The carry of the whole global batch (every rank's rows), so that a resume may use another number of ranks.
    if (carry_)
      for (auto& [k, v] : carry_->state_dict("carry.")) extra[k] = group_.all_gather_cat(v);
    extra["train.world_size"] = torch::tensor(group_.world_size(), torch::kLong);
    // What the data position (iteration, batch) refers to: a resume on another dataset is refused.
    extra["data.train_examples"] = torch::tensor(train_ds_->num_examples(), torch::kLong);
    extra["data.total_groups"] = torch::tensor(train_ds_->metadata().total_groups, torch::kLong);
    const std::string path = dir + "/step_" + std::to_string(step_) + ".pt";
    if (!lead_) return path;  // rank 0 writes
    save_checkpoint(path, model_, extra, {{"train_config", cfg_.to_yaml()}});
    // Keep the last K.
    const auto all = list_checkpoints(cfg_.run_dir);
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
    if (ema_) {
      const StateDict averages = ema_weights(ck);
      if (averages.empty())
        log::warn("warning: " + path + " has no EMA: the EMA starts from its weights");
      else
        ema_->load(averages, path);
    }
    for (const auto& [key, now] : {std::pair<std::string, int64_t>{"data.train_examples", train_ds_->num_examples()},
                                   {"data.total_groups", train_ds_->metadata().total_groups}})
      if (ck.extra.count(key) && ck.extra.at(key).item<int64_t>() != now)
        throw Error(
            fmt::format("{}: the dataset changed under this run: {} has {} {} now, the checkpoint was written "
                        "with {}",
                        path, cfg_.data_path, now, key.substr(5), ck.extra.at(key).item<int64_t>()));
    step_ = get("train.step").item<int64_t>();
    if (ck.extra.count("train.total_steps")) total_steps_ = ck.extra.at("train.total_steps").item<int64_t>();
    resumed_ = true;
    if (ck.extra.count("train.elapsed_s")) elapsed_before_ = ck.extra.at("train.elapsed_s").item<double>();
    iteration_ = get("train.iteration").item<int64_t>();
    batch_in_iter_ = get("train.batch_in_iter").item<int64_t>();
    // Checkpoints written before this field kept every row of their step.
    const bool eval_logged =
        !ck.extra.count("train.eval_logged") || ck.extra.at("train.eval_logged").item<int64_t>() != 0;
    eval_logged_step_ = eval_logged ? step_ : -1;
    {
      auto gen = at::globalContext().defaultGenerator(device_);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(get("rng.state"));
    }
    if (ck.extra.count("carry.z_H")) {
      // The checkpoint holds the global batch's carry: this rank takes its rows.
      StateDict mine;
      const int64_t local = train_ds_->local_batch_size(), offset = group_.rank() * local;
      for (const auto& [k, v] : ck.extra) {
        if (k.rfind("carry.", 0) != 0) continue;
        if (v.dim() == 0 || v.size(0) != cfg_.global_batch_size)
          throw Error(fmt::format("{}: '{}' has {} rows, but the global batch is {}", path, k, v.dim() ? v.size(0) : 0,
                                  cfg_.global_batch_size));
        mine[k] = v.narrow(0, offset, local);
      }
      carry_ = Carry::from_state_dict(mine, "carry.", model_->config().dtype(), device_, path);
      carry_->current.global_size = cfg_.global_batch_size;
      carry_->current.row_offset = offset;
    }
    const int64_t saved_world =
        ck.extra.count("train.world_size") ? ck.extra.at("train.world_size").item<int64_t>() : 1;
    if (saved_world != group_.world_size())
      log::info(
          fmt::format("{} was written by {} process(es); continuing with {}", path, saved_world, group_.world_size()));
    log::info(fmt::format("resumed {} at step {}", path, step_));
  }

  // Every rank starts from rank 0's weights (puzzle embeddings and other buffers included).
  void broadcast_weights() {
    if (!group_.connected()) return;
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> all;
    for (const auto& p : model_->parameters()) all.push_back(p);
    for (const auto& b : model_->buffers())
      if (b.defined()) all.push_back(b);
    group_.broadcast(all, 0);
  }

  // fit_time_limit: after kFitMeasureSteps steps, the rate measured over the steps after the first kFitWarmupSteps
  // (the first ones pay one-off costs: the first quick-start step took 2.4 s, later ones ~0.5 s) sizes the run to
  // end (with its final evaluation) inside time_limit_minutes. After each evaluation and every kFitRecheckSteps steps
  // the rate since the warm-up steps (evaluations included) is measured again and the run shortened if it no longer
  // fits: a machine that slows down ends its schedule early instead of being cut off by the clock. Runs are only
  // ever shortened.
  // Every rank measures the same steps; rank 0's figures are used by all.
  static constexpr int64_t kFitMeasureSteps = 20;
  static constexpr int64_t kFitWarmupSteps = 5;
  static constexpr int64_t kFitRecheckSteps = 100;
  void fit_to_time_limit(std::chrono::steady_clock::time_point start) {
    const auto now = clock_now();
    std::vector<torch::Tensor> seconds{torch::tensor(
        {std::chrono::duration<double>(now - start).count(), std::chrono::duration<double>(now - fit_warm_).count()},
        torch::kDouble)};
    group_.broadcast(seconds, 0);
    const double spent = seconds[0][0].item<double>();
    const double per_step = seconds[0][1].item<double>() / static_cast<double>(step_ - fit_warm_step_);
    // 85% of the limit for training: the final evaluation and checkpoint need the rest.
    const double budget = cfg_.time_limit_minutes * 60 * 0.85 - spent;
    const int64_t fits = step_ + std::max<int64_t>(1, static_cast<int64_t>(budget / per_step));
    const bool first = fit_measuring_;
    fit_measuring_ = false;  // measured: the time limit applies from here on
    fit_at_step_ = step_ + kFitRecheckSteps;
    if (fits >= total_steps_) return;
    log::info(
        fmt::format("fit_time_limit: {:.1f} samples/s over steps {}-{}; the run is {} to {} of {} steps to end within "
                    "time_limit_minutes={} (the learning rate schedule follows)",
                    cfg_.global_batch_size / per_step, fit_warm_step_ + 1, step_, first ? "sized" : "shortened", fits,
                    planned_steps_, cfg_.time_limit_minutes));
    total_steps_ = fits;
  }
  int64_t fit_at_step_ = -1;    // the next step at which the run is sized (-1: never)
  int64_t fit_warm_step_ = -1;  // the rate is measured from the end of this step
  bool fit_measuring_ = false;  // the first kFitMeasureSteps steps run whatever the clock says
  int64_t planned_steps_ = 0;   // the schedule's length before fit_time_limit shortens it
  std::chrono::steady_clock::time_point fit_warm_{};
  bool resumed_ = false;
  // The step whose evaluation row was last written (on resume: the checkpoint's step, if its row was). A checkpoint
  // written before its step's evaluation replays the evaluation: its row must not stay in the log twice.
  int64_t eval_logged_step_ = -1;

  TrainConfig cfg_;
  torch::Device device_{torch::kCPU};
  const TrainOptions options_;
  std::chrono::steady_clock::time_point clock_now() const {
    if (!options_.clock) return std::chrono::steady_clock::now();
    return std::chrono::steady_clock::time_point(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(options_.clock())));
  }
  dist::LaunchInfo where_;
  dist::Group& group_;
  bool lead_;  // rank 0: writes the logs, the metrics and the checkpoints
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::shared_ptr<data::PuzzleDataset> train_ds_;
  LossType loss_type_ = LossType::StablemaxCrossEntropy;
  ACTModel model_{nullptr};
  std::unique_ptr<ModelOptimizer> optimizer_;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<log::FileSink> log_file_;
  std::unique_ptr<EMA> ema_;
  std::optional<Carry> carry_;
  // Training time of this run: before this invocation (from the checkpoint) plus since the loop started.
  double elapsed_seconds() const {
    return elapsed_before_ + std::chrono::duration<double>(clock_now() - loop_start_).count();
  }
  double elapsed_before_ = 0;
  std::chrono::steady_clock::time_point loop_start_ = std::chrono::steady_clock::now();
  int64_t step_ = 0, iteration_ = 0, batch_in_iter_ = 0, total_steps_ = 0, epochs_per_iter_ = 1, total_iters_ = 1;
};

}  // namespace

TrainOutcome train(TrainConfig config, const TrainOptions& options) {
  check(!config.data_path.empty(), "train: data_path is not set (give data_path=DIR)");
  const dist::LaunchInfo where = dist::launch_info_from_environment();
  dist::WorldScope world(join_run(where, config));
  dist::Group& group = dist::world();
  if (group.rank() == 0) {
    if (config.run_dir.empty())
      config.run_dir = "runs/" + (config.name.empty() ? "hrm" : config.name) + "-" + timestamp();
    if (!list_checkpoints(config.run_dir).empty())
      throw Error(config.run_dir + ": the run folder already has checkpoints (use hrm train --resume " +
                  config.run_dir + ")");
    // A run killed while writing its first checkpoint left only the write's temporary file: it starts afresh.
    remove_unfinished_checkpoints(config.run_dir);
    fs::create_directories(config.run_dir);
    for (const char* f : {"/metrics.jsonl", "/metrics.csv", "/train.log"}) fs::remove(config.run_dir + f);
  }
  // Every rank runs rank 0's config (its run folder included).
  if (group.connected()) {
    const int64_t threads = config.threads;  // a per-process setting
    config = TrainConfig::from_yaml(group.broadcast_string(config.to_yaml()), "the config of rank 0");
    config.threads = threads;
  }
  return Trainer(std::move(config), options, where).run("");
}

namespace {
// The newest checkpoint of a run that reads completely; a newer unreadable one (truncated, corrupt) is skipped with
// a warning naming it and why.
std::string latest_readable_checkpoint(const std::string& run_dir) {
  const auto all = list_checkpoints(run_dir);
  if (all.empty()) return latest_checkpoint(run_dir);  // its error names the folder
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      read_checkpoint(it->second);
      return it->second;
    } catch (const std::exception& e) {
      log::warn(fmt::format("warning: skipping an unreadable checkpoint: {}", e.what()));
    }
  }
  throw Error(run_dir + ": none of its " + std::to_string(all.size()) + " checkpoints is readable");
}

}  // namespace

TrainOutcome resume_training(const std::string& run_dir, const std::vector<std::string>& overrides,
                             const TrainOptions& options) {
  // Every rank reads it: the run folder is shared.
  const std::string checkpoint = latest_readable_checkpoint(run_dir);
  const std::string cfg_path = run_dir + "/config.yaml";
  TrainConfig c = TrainConfig::from_yaml(read_file(cfg_path), cfg_path);
  c.max_steps = 0;  // stop conditions belong to one invocation, not to the run
  c.time_limit_minutes = 0;
  for (const auto& o : overrides) c.apply_override(o, "command line");
  c.run_dir = run_dir;
  c.validate(cfg_path);
  const dist::LaunchInfo where = dist::launch_info_from_environment();
  dist::WorldScope world(join_run(where, c));
  const std::string agreed = dist::world().broadcast_string(checkpoint);
  check(agreed == checkpoint, "resume: rank 0 resumes from " + agreed + " but this rank (" +
                                  std::to_string(dist::world().rank()) + ") found " + checkpoint +
                                  " (the run folder must be the same on every node)");
  return Trainer(std::move(c), options, where).run(checkpoint);
}

}  // namespace hrm
