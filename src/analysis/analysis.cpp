#include "hrm/analysis/analysis.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "hrm/analysis/report.h"
#include "hrm/eval/evaluate.h"
#include "hrm/eval/inference.h"
#include "hrm/model/registry.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::analysis {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// The first `rows` test examples as one batch (test mode keeps dataset order).
Batch first_rows(const data::PuzzleDataset& test, int64_t rows, const torch::Device& device) {
  std::vector<Batch> parts;
  int64_t have = 0;
  test.for_each_batch(0, [&](data::LoadedBatch&& lb) {
    const int64_t take = std::min<int64_t>({lb.effective_size, lb.batch.size(), rows - have});
    parts.push_back(Batch{lb.batch.inputs.narrow(0, 0, take), lb.batch.labels.narrow(0, 0, take),
                          lb.batch.puzzle_identifiers.narrow(0, 0, take)});
    have += take;
    return have < rows;
  });
  check(have > 0, "analysis: the test split is empty");
  std::vector<torch::Tensor> in, lab, ids;
  for (const auto& b : parts) {
    in.push_back(b.inputs);
    lab.push_back(b.labels);
    ids.push_back(b.puzzle_identifiers);
  }
  return Batch{torch::cat(in).to(device), torch::cat(lab).to(device), torch::cat(ids).to(device)};
}

// Runs halt_max_steps segments from a fresh carry in eval mode, calling `each(segment, state, value)` for every
// update the model reports, and `segment_start(segment, carry)` with the (reset) state each segment starts from.
void watch(ACTModel& model, const Batch& batch,
           const std::function<void(int64_t segment, const InnerCarry& start)>& segment_start,
           const std::function<void(int64_t segment, const char* state, const torch::Tensor& value)>& each) {
  model->eval();
  torch::NoGradGuard no_grad;
  int64_t segment = 0;
  model->inner->observer = [&](const char* state, const torch::Tensor& value) { each(segment, state, value); };
  Carry carry = model->initial_carry(batch);
  try {
    for (; segment < model->config().halt_max_steps; ++segment) {
      // The state the segment starts from: the reset carry for samples that halted (all of them at segment 0).
      segment_start(segment, model->inner->reset_carry(carry.halted, carry.inner));
      carry = model->forward(carry, batch).first;
      if (carry.halted.all().item<bool>()) break;
    }
  } catch (...) {
    model->inner->observer = nullptr;
    throw;
  }
  model->inner->observer = nullptr;
}

}  // namespace

double participation_ratio_of(const torch::Tensor& x) {
  if (x.size(0) < 2) return 0;
  const torch::Tensor c = x.to(torch::kDouble) - x.to(torch::kDouble).mean(0, true);
  const torch::Tensor cov = c.t().mm(c) / static_cast<double>(x.size(0) - 1);
  const double tr = cov.trace().item<double>(), fro2 = cov.pow(2).sum().item<double>();
  return fro2 > 0 ? tr * tr / fro2 : 0;
}

namespace {

// Per trajectory (row of the batch), the position-averaged states after every update: [B, updates, hidden].
std::map<std::string, torch::Tensor> trajectories_of(ACTModel& model, const Batch& batch) {
  std::map<std::string, std::vector<torch::Tensor>> seen;
  watch(
      model, batch, [](int64_t, const InnerCarry&) {},
      [&](int64_t, const char* state, const torch::Tensor& v) {
        seen[state].push_back(v.to(torch::kFloat).mean(1).cpu());
      });
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : seen) out[k] = torch::stack(v, 1);
  return out;
}

Json nullable(double v) { return v < 0 ? Json(nullptr) : Json(v); }

}  // namespace

Residuals forward_residuals(ACTModel& model, const data::PuzzleDataset& test) {
  const Batch batch = first_rows(test, test.config().global_batch_size, model->device());
  Residuals r;
  r.batch_size = batch.size();
  std::map<std::string, torch::Tensor> previous;
  watch(
      model, batch,
      [&](int64_t segment, const InnerCarry& start) {
        previous["z_H"] = start.z_H;
        if (start.z_L.defined()) previous["z_L"] = start.z_L;
        r.z_H.emplace_back();
        r.z_L.emplace_back();
      },
      [&](int64_t segment, const char* state, const torch::Tensor& v) {
        const torch::Tensor prev = previous.at(state).to(torch::kFloat), now = v.to(torch::kFloat);
        const torch::Tensor num = (now - prev).flatten(1).norm(2, 1), den = prev.flatten(1).norm(2, 1).clamp_min(1e-30);
        const double value = (num / den).mean().item<double>();
        (std::string(state) == "z_H" ? r.z_H : r.z_L)[static_cast<size_t>(segment)].push_back(value);
        previous[state] = v;
      });
  if (!r.z_L.empty() && std::all_of(r.z_L.begin(), r.z_L.end(), [](const auto& s) { return s.empty(); })) r.z_L.clear();
  return r;
}

std::string Residuals::to_json() const {
  return Json{{"analysis", "residuals"}, {"batch_size", batch_size}, {"z_H", z_H}, {"z_L", z_L}}.dump();
}

ParticipationRatio participation_ratio(ACTModel& trained, ACTModel& untrained, const data::PuzzleDataset& test,
                                       int64_t trajectories) {
  check(trajectories >= 2, "participation ratio: at least 2 trajectories");
  const Batch batch = first_rows(test, trajectories, trained->device());
  ParticipationRatio r;
  r.trajectories = batch.size();
  auto pooled = [](const torch::Tensor& t, int64_t k) { return t.narrow(0, 0, k).reshape({-1, t.size(2)}); };
  const auto mine = trajectories_of(trained, batch), base = trajectories_of(untrained, batch.to(untrained->device()));
  r.pr_z_H = participation_ratio_of(pooled(mine.at("z_H"), r.trajectories));
  r.untrained_pr_z_H = participation_ratio_of(pooled(base.at("z_H"), r.trajectories));
  if (mine.count("z_L")) {
    r.pr_z_L = participation_ratio_of(pooled(mine.at("z_L"), r.trajectories));
    r.untrained_pr_z_L = participation_ratio_of(pooled(base.at("z_L"), r.trajectories));
  }
  for (int64_t k : {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}) {
    if (k > r.trajectories) break;
    r.pr_vs_trajectories.push_back({k, participation_ratio_of(pooled(mine.at("z_H"), k)),
                                    mine.count("z_L") ? participation_ratio_of(pooled(mine.at("z_L"), k)) : -1});
  }
  if (r.pr_vs_trajectories.empty() || r.pr_vs_trajectories.back().trajectories != r.trajectories)
    r.pr_vs_trajectories.push_back({r.trajectories, r.pr_z_H, r.pr_z_L});
  return r;
}

std::string ParticipationRatio::to_json() const {
  Json curve = Json::array();
  for (const auto& p : pr_vs_trajectories)
    curve.push_back({{"trajectories", p.trajectories}, {"pr_z_H", p.pr_z_H}, {"pr_z_L", nullable(p.pr_z_L)}});
  return Json{{"analysis", "pr"},
              {"trajectories", trajectories},
              {"pr_z_H", pr_z_H},
              {"pr_z_L", nullable(pr_z_L)},
              {"untrained_pr_z_H", untrained_pr_z_H},
              {"untrained_pr_z_L", nullable(untrained_pr_z_L)},
              {"pr_vs_trajectories", curve}}
      .dump();
}

Scaling inference_scaling(const std::string& checkpoint, const std::string& data_dir,
                          const std::vector<int64_t>& max_steps, const std::string& device, int64_t batch_size) {
  Scaling s;
  for (int64_t m : max_steps) {
    check(m >= 1, "scaling: --max-steps values must be >= 1, got " + std::to_string(m));
    InferenceSetup setup = load_for_inference(checkpoint, data_dir, "", {"arch.halt_max_steps=" + std::to_string(m)},
                                              resolve_device(device));
    const data::PuzzleDataset test(data::LoaderConfig::test_split(
        setup.data_path, batch_size > 0 ? batch_size : std::min<int64_t>(setup.global_batch_size, 1024)));
    const EvalOutput out = evaluate(setup.model, test, setup.loss_type, false);
    s.max_steps.push_back(m);
    s.exact_accuracy.push_back(out.metrics.at("exact_accuracy"));
    s.accuracy.push_back(out.metrics.at("accuracy"));
    s.mean_steps.push_back(out.metrics.at("steps"));
  }
  return s;
}

std::string Scaling::to_json() const {
  return Json{{"analysis", "scaling"},
              {"halt_max_steps", max_steps},
              {"exact_accuracy", exact_accuracy},
              {"accuracy", accuracy},
              {"steps", mean_steps}}
      .dump();
}

std::string default_analysis_path(const std::string& checkpoint, const std::string& name) {
  fs::path run = fs::path(checkpoint);
  if (!fs::is_directory(run)) run = run.parent_path().parent_path();  // RUN/checkpoints/step_N.pt
  check(fs::exists(run / "config.yaml"), checkpoint + " is not in a run folder: give --json FILE");
  return (run / "analysis" / (name + ".json")).string();
}

std::string run_analysis(const AnalysisRequest& r) {
  const std::string path = r.json_path.empty() ? default_analysis_path(r.checkpoint, r.kind) : r.json_path;
  std::string json;
  if (r.kind == "scaling") {
    json = inference_scaling(r.checkpoint, r.data_dir, r.max_steps, r.device, r.batch_size).to_json();
  } else if (r.kind == "residuals" || r.kind == "pr") {
    InferenceSetup s = load_for_inference(r.checkpoint, r.data_dir, "", {}, resolve_device(r.device), r.weights);
    const data::PuzzleDataset test(data::LoaderConfig::test_split(
        s.data_path, r.batch_size > 0 ? r.batch_size : std::min<int64_t>(s.global_batch_size, 256)));
    if (r.kind == "residuals") {
      json = forward_residuals(s.model, test).to_json();
    } else {
      torch::manual_seed(0);  // the same architecture, untrained
      ACTModel untrained = make_model(s.model->config());
      untrained->to(s.model->device());
      json = participation_ratio(s.model, untrained, test, r.trajectories).to_json();
    }
  } else {
    throw Error("analyze: unknown analysis '" + r.kind + "' (expected residuals, pr or scaling)");
  }
  ensure_parent_dir(path);
  write_file_atomic(path, json + "\n");
  // A run folder's report shows the analysis at once.
  fs::path run =
      fs::is_directory(r.checkpoint) ? fs::path(r.checkpoint) : fs::path(r.checkpoint).parent_path().parent_path();
  if (fs::exists(run / "metrics.jsonl") && fs::exists(run / "config.yaml")) write_report(run.string());
  return path;
}

}  // namespace hrm::analysis
