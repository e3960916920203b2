#include "hrm/eval/evaluate.h"

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "hrm/data/npy.h"
#include "hrm/dist/group.h"
#include "hrm/eval/arc_vote.h"
#include "hrm/eval/inference.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/memory.h"
#include "hrm/util/progress.h"
#include "hrm/util/signals.h"
#include "hrm/util/stats.h"

namespace hrm {
namespace fs = std::filesystem;
using Json = nlohmann::json;

EvalOutput evaluate(ACTModel& model, const data::PuzzleDataset& test, LossType loss_type, bool progress) {
  check(test.config().test_mode, "evaluate: the dataset must be opened in test mode");
  // Sharded over the ranks of a data-parallel run (the loader gives each rank its rows of every batch); the sums
  // and every prediction are gathered, so every rank returns what one process would.
  dist::Group& group = dist::world();
  const bool sharded = test.config().world_size > 1;
  check(!sharded || (test.config().world_size == group.world_size() && test.config().rank == group.rank()),
        "evaluate: the test split is sharded for another process group");
  model->eval();
  torch::NoGradGuard no_grad;
  const auto device = model->device();
  std::map<std::string, double> sums;
  std::vector<torch::Tensor> inputs, labels, preds, qh, ids;
  std::vector<int64_t> effective;  // real examples of each global batch
  std::vector<int64_t> batch_faults;
  const int64_t total = (test.num_examples() + test.config().global_batch_size - 1) / test.config().global_batch_size;
  ProgressBar bar("eval", total, progress && group.rank() == 0);
  test.for_each_batch(0, [&](data::LoadedBatch&& lb) {
    // Ctrl-C/SIGTERM (when a caller catches them) ends the evaluation at the next batch. Sharded evaluations run to
    // the end: ranks stopping at different batches would leave the others in the final collectives.
    if (!sharded && stop_signal())
      throw Interrupted("stopped after " + std::to_string(effective.size()) + " of " + std::to_string(total) +
                        " batches");
    const int64_t faults_before = minor_page_faults();
    const Batch batch = lb.batch.to(device);
    ACTOutputs out;
    const Carry carry = run_to_halt(model, batch, [&](int64_t, const Carry&, const ACTOutputs& o) { out = o; });
    const LossOutput loss = act_loss(carry, out, loss_type);
    for (const auto& [k, v] : loss.metrics) sums[k] += v.to(torch::kDouble).item<double>();
    // Sharded: keep every row (padding included) so that the gathered rows line up; cut after gathering.
    const int64_t keep =
        sharded ? lb.batch.size() : std::clamp<int64_t>(lb.effective_size - lb.batch.row_offset, 0, lb.batch.size());
    effective.push_back(lb.effective_size);
    inputs.push_back(lb.batch.inputs.narrow(0, 0, keep));
    labels.push_back(lb.batch.labels.narrow(0, 0, keep));
    preds.push_back(out.logits.argmax(-1).to(torch::kInt).to(torch::kCPU).narrow(0, 0, keep));
    qh.push_back(out.q_halt_logits.to(torch::kCPU).narrow(0, 0, keep));
    ids.push_back(lb.batch.puzzle_identifiers.narrow(0, 0, keep));
    batch_faults.push_back(minor_page_faults() - faults_before);
    bar.add();
    return true;
  });
  bar.finish();
  EvalOutput r;
  r.median_batch_minor_faults = median(batch_faults);
  if (sharded) {
    std::vector<torch::Tensor> s;
    for (const auto& [k, v] : sums) s.push_back(torch::tensor({v}, torch::kDouble));
    if (!s.empty()) {
      torch::Tensor all = torch::cat(s);
      std::vector<torch::Tensor> one{all};
      group.all_reduce_sum(one);
      int64_t i = 0;
      for (auto& [k, v] : sums) v = one[0][i++].item<double>();
    }
  }
  const double count = std::max(1.0, sums["count"]);
  r.metrics["count"] = sums["count"];
  for (const auto& [k, v] : sums)
    if (k != "count") r.metrics[k] = v / count;
  if (inputs.empty()) return r;
  r.inputs = torch::cat(inputs);
  r.labels = torch::cat(labels);
  r.predictions = torch::cat(preds);
  r.q_halt_logits = torch::cat(qh);
  r.puzzle_identifiers = torch::cat(ids);
  if (sharded) {
    // Rank r's rows of global batch b sit at r * nb * B + b * B; the real ones are the first
    // clamp(effective_b - r * B, 0, B).
    const int64_t B = test.local_batch_size(), nb = static_cast<int64_t>(effective.size());
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t rank = 0; rank < group.world_size(); ++rank)
        for (int64_t i = 0; i < std::clamp<int64_t>(effective[b] - rank * B, 0, B); ++i)
          rows.push_back(rank * nb * B + b * B + i);
    const torch::Tensor index = torch::tensor(rows, torch::kLong);
    for (torch::Tensor* t : {&r.inputs, &r.labels, &r.predictions, &r.q_halt_logits, &r.puzzle_identifiers})
      *t = group.all_gather_cat(*t).index_select(0, index);
  }
  return r;
}

void add_checker_metrics(data::TaskKind kind, const EvalOutput& out, std::map<std::string, double>* metrics) {
  if (!out.predictions.defined() || !data::has_checker(kind)) return;
  const torch::Tensor in = out.inputs.to(torch::kInt).contiguous(), pred = out.predictions.to(torch::kInt).contiguous();
  const int64_t n = pred.size(0), S = pred.size(1);
  int64_t valid = 0;
  for (int64_t i = 0; i < n; ++i)
    valid += data::is_valid_solution(kind, in.data_ptr<int32_t>() + i * S, pred.data_ptr<int32_t>() + i * S, S);
  (*metrics)["valid_solutions"] = n ? static_cast<double>(valid) / static_cast<double>(n) : 0.0;
}

Evaluator test_split_evaluator(bool progress) {
  struct TestSplit {
    std::string data_path;
    int64_t batch_size = 0, world_size = 1;
    std::shared_ptr<data::PuzzleDataset> dataset;  // null: the dataset has no test split
    data::TaskKind kind = data::TaskKind::Generic;
  };
  auto cache = std::make_shared<TestSplit>();
  return [cache, progress](ACTModel& model, const TrainConfig& config) -> std::map<std::string, double> {
    const dist::Group& group = dist::world();
    if (cache->data_path != config.data_path || cache->batch_size != config.global_batch_size ||
        cache->world_size != group.world_size()) {
      *cache =
          TestSplit{config.data_path, config.global_batch_size, group.world_size(), nullptr, data::TaskKind::Generic};
      if (fs::exists(config.data_path + "/test")) {
        data::LoaderConfig lc = data::LoaderConfig::test_split(config.data_path, config.global_batch_size);
        lc.rank = group.rank();  // sharded over the ranks of a data-parallel run
        lc.world_size = group.world_size();
        cache->dataset = std::make_shared<data::PuzzleDataset>(lc);
        cache->kind = data::detect_task_kind(config.data_path, cache->dataset->metadata());
      }
    }
    if (!cache->dataset) return {};
    EvalOutput e =
        evaluate(model, *cache->dataset, loss_type_from_string(config.loss_type), progress && ::isatty(STDERR_FILENO));
    add_checker_metrics(cache->kind, e, &e.metrics);
    return e.metrics;
  };
}

EvalReport evaluate_checkpoint(const EvalRequest& r) {
  check(r.batch_size >= 0, "eval: --batch-size must be >= 1, or 0 for the training global batch size (got " +
                               std::to_string(r.batch_size) + ")");
  InferenceSetup s =
      load_for_inference(r.checkpoint, r.data_dir, r.config_path, r.overrides, resolve_device(r.device), r.weights);
  const data::PuzzleDataset test(data::LoaderConfig::test_split(
      s.data_path, r.batch_size > 0 ? r.batch_size : std::min<int64_t>(s.global_batch_size, 1024)));
  const int64_t faults_before = minor_page_faults();
  EvalOutput out = evaluate(s.model, test, s.loss_type, r.progress);
  const int64_t faults = minor_page_faults() - faults_before;
  EvalReport report;
  report.batches = (test.num_examples() + test.config().global_batch_size - 1) / test.config().global_batch_size;
  report.minor_faults_per_batch =
      static_cast<double>(faults) / static_cast<double>(std::max<int64_t>(1, report.batches));
  report.median_batch_minor_faults = out.median_batch_minor_faults;
  report.data_path = s.data_path;
  report.kind = data::detect_task_kind(s.data_path, test.metadata());
  report.halt_max_steps = s.model->config().halt_max_steps;
  report.ema = s.ema;
  add_checker_metrics(report.kind, out, &out.metrics);
  if (report.kind == data::TaskKind::Arc) {
    const ArcVoteResult v = arc_vote(s.data_path, out);
    for (const auto& [k, x] : v.pass_at) out.metrics[k] = x;
    if (!r.submission_path.empty()) write_file_atomic(r.submission_path, v.submission_json);
  }
  if (!r.predictions_prefix.empty() && out.predictions.defined()) {
    npy::save(r.predictions_prefix + "_predictions.npy", out.predictions);
    npy::save(r.predictions_prefix + "_q_halt_logits.npy", out.q_halt_logits);
    npy::save(r.predictions_prefix + "_inputs.npy", out.inputs);
    npy::save(r.predictions_prefix + "_labels.npy", out.labels);
  }
  report.metrics = std::move(out.metrics);
  return report;
}

std::string metrics_json(const std::map<std::string, double>& metrics) {
  Json j = Json::object();
  for (const auto& [k, v] : metrics) j[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  return j.dump();
}

}  // namespace hrm
