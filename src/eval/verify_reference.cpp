#include "hrm/eval/verify_reference.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "hrm/data/npy.h"
#include "hrm/loss/act_loss.h"
#include "hrm/model/registry.h"
#include "hrm/nn/fused.h"
#include "hrm/optim/ema.h"
#include "hrm/optim/model_optimizer.h"
#include "hrm/train/checkpoint.h"
#include "hrm/train/train_step.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Accumulates the comparison of a group of tensors and prints one line for it.
class Group {
 public:
  Group(std::string name, const VerifyOptions& opt) : name_(std::move(name)), opt_(opt) {}

  // allclose-style comparison; elements where `skip` is true are only counted.
  void close(const std::string& what, const torch::Tensor& ours, const torch::Tensor& ref,
             const torch::Tensor& skip = {}) {
    if (!same_shape(what, ours, ref)) return;
    ++tensors_;
    const torch::Tensor a = ours.detach().to(torch::kCPU).to(torch::kDouble);
    const torch::Tensor b = ref.to(torch::kDouble);
    torch::Tensor diff = (a - b).abs();
    torch::Tensor bad = diff > (opt_.atol + opt_.rtol * b.abs());
    bad = bad | ~torch::isfinite(a);
    if (skip.defined()) {
      // Scale-invariant updates of ~0 gradients may take either sign: such elements may differ, and are counted.
      const torch::Tensor allowed = bad & skip;
      eligible_ += skip.sum().item<int64_t>();
      skipped_ += allowed.sum().item<int64_t>();
      bad = bad & ~skip;
      diff = torch::where(allowed, torch::zeros_like(diff), diff);
    }
    if (diff.numel()) {
      max_abs_ = std::max(max_abs_, diff.max().item<double>());
      const torch::Tensor rel = diff / b.abs().clamp_min(1e-30);
      const torch::Tensor rel_counted = torch::where(b.abs() > opt_.atol, rel, torch::zeros_like(rel));
      max_rel_ = std::max(max_rel_, rel_counted.max().item<double>());
    }
    const int64_t n_bad = bad.sum().item<int64_t>();
    if (n_bad) {
      // Name the worst element: where it is and both values.
      const int64_t worst = torch::where(bad, diff, torch::zeros_like(diff)).flatten().argmax().item<int64_t>();
      std::ostringstream ss;
      ss << what << " (" << n_bad << " of " << bad.numel() << " elements; worst: flat index " << worst << ", ours "
         << std::setprecision(9) << a.flatten()[worst].item<double>() << ", reference "
         << b.flatten()[worst].item<double>() << ")";
      fail(ss.str());
    }
  }

  void exact(const std::string& what, const torch::Tensor& ours, const torch::Tensor& ref) {
    if (!same_shape(what, ours, ref)) return;
    ++tensors_;
    const torch::Tensor a = ours.detach().to(torch::kCPU).to(torch::kLong), b = ref.to(torch::kLong);
    const int64_t n_bad = (a != b).sum().item<int64_t>();
    if (n_bad) fail(what + " (" + std::to_string(n_bad) + " differ exactly)");
  }

  void scalar(const std::string& what, double ours, double ref) {
    close(what, torch::tensor(ours, torch::kDouble), torch::tensor(ref, torch::kDouble));
  }

  bool report(std::ostream& log, VerifyResult& result) const {
    ++result.groups;
    result.skipped_elements += skipped_;
    const bool ok = failures_.empty();
    if (!ok) {
      ++result.failed_groups;
      result.ok = false;
    }
    std::ostringstream line;
    line << (ok ? "[ok]   " : "[FAIL] ") << std::left << std::setw(34) << name_ << std::right << std::setw(4)
         << tensors_ << " tensors  max_abs " << std::scientific << std::setprecision(2) << max_abs_ << "  max_rel "
         << max_rel_;
    if (eligible_)
      line << "  (" << skipped_ << " of " << eligible_ << " elements with ~0 reference gradient differ: allowed)";
    for (const auto& f : failures_) line << "\n         mismatch: " << f;
    log << line.str() << std::endl;
    return ok;
  }

 private:
  bool same_shape(const std::string& what, const torch::Tensor& ours, const torch::Tensor& ref) {
    if (!ours.defined()) {
      fail(what + ": missing on our side");
      return false;
    }
    if (ours.sizes() != ref.sizes()) {
      std::ostringstream ss;
      ss << what << ": shape " << ours.sizes() << " vs reference " << ref.sizes();
      fail(ss.str());
      return false;
    }
    return true;
  }
  void fail(const std::string& f) { failures_.push_back(f); }

  std::string name_;
  const VerifyOptions& opt_;
  int64_t tensors_ = 0, skipped_ = 0, eligible_ = 0;
  double max_abs_ = 0, max_rel_ = 0;
  std::vector<std::string> failures_;
};

Json read_manifest(const std::string& dir) {
  const std::string path = dir + "/manifest.json";
  try {
    Json m = Json::parse(read_file(path));
    check(m.is_object(), path + ": expected a JSON object");
    return m;
  } catch (const Json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// manifest.model (absent: hrm).
std::string fixture_model(const std::string& dir) {
  const Json m = read_manifest(dir);
  if (!m.contains("model")) return "hrm";
  check(m["model"].is_string(), dir + "/manifest.json: 'model' must be a string");
  return m["model"].get<std::string>();
}

class Fixture {
 public:
  explicit Fixture(std::string dir) : dir_(std::move(dir)) {
    const std::string manifest_path = dir_ + "/manifest.json";
    manifest_ = read_manifest(dir_);
    for (const char* key : {"reference_config", "loss_type", "optimizer", "train_segments", "param_keys"})
      check(manifest_.contains(key), manifest_path + ": missing '" + key + "'");
    config = ModelConfig::from_json(manifest_["reference_config"].dump(), manifest_path + " (reference_config)");
    config.name = fixture_model(dir_);
    loss = loss_type_from_string(manifest_["loss_type"].get<std::string>());
    const Json& o = manifest_["optimizer"];
    try {
      opt.lr = o.at("lr").get<double>();
      opt.weight_decay = o.at("weight_decay").get<double>();
      opt.beta1 = o.at("betas").at(0).get<double>();
      opt.beta2 = o.at("betas").at(1).get<double>();
      opt.puzzle_emb_lr = o.value("puzzle_emb_lr", 0.0);
      opt.puzzle_emb_weight_decay = o.value("puzzle_emb_weight_decay", 0.0);
      segments = manifest_["train_segments"].get<int64_t>();
      if (manifest_.contains("ema_rate")) ema_rate = manifest_["ema_rate"].get<double>();
      for (const auto& k : manifest_["param_keys"]) param_keys.push_back(k.get<std::string>());
    } catch (const Json::exception& e) {
      throw Error(manifest_path + ": bad optimizer/segment settings: " + e.what());
    }
  }

  torch::Tensor load(const std::string& rel) const { return npy::load(dir_ + "/" + rel); }
  bool has(const std::string& rel) const { return fs::exists(dir_ + "/" + rel); }
  const std::string& dir() const { return dir_; }
  const Json& manifest() const { return manifest_; }

  // Model tensors stored as <prefix><reference key>.npy, mapped to our keys.
  // only_present: skip keys without a file (the EMA has no buffers).
  StateDict state(const std::string& prefix, bool only_present = false) const {
    StateDict s;
    for (const auto& k : param_keys)
      if (!only_present || has(prefix + k + ".npy")) s[reference_key_to_ours(k)] = load(prefix + k + ".npy");
    return s;
  }

  Batch batch(const std::string& folder) const {
    return Batch{load(folder + "/batch_inputs.npy"), load(folder + "/batch_labels.npy"),
                 load(folder + "/batch_puzzle_identifiers.npy")};
  }

  // The carry saved after segment i, in our dtypes.
  Carry carry_after(int64_t i, const Batch& like) const {
    const std::string f = "steps/" + std::to_string(i) + "/";
    const auto dtype = config.dtype();
    return Carry{
        InnerCarry{load(f + "z_H.npy").to(dtype), has(f + "z_L.npy") ? load(f + "z_L.npy").to(dtype) : torch::Tensor()},
        load(f + "steps.npy").to(torch::kInt), load(f + "halted.npy").to(torch::kBool),
        Batch{load(f + "current_inputs.npy").to(like.inputs.scalar_type()),
              load(f + "current_labels.npy").to(like.labels.scalar_type()),
              load(f + "current_puzzle_identifiers.npy").to(like.puzzle_identifiers.scalar_type())}};
  }

  ModelConfig config;
  LossType loss = LossType::StablemaxCrossEntropy;
  OptimizerConfig opt;
  int64_t segments = 0;
  double ema_rate = -1;  // < 0: the fixture has no EMA
  std::vector<std::string> param_keys;

 private:
  std::string dir_;
  Json manifest_;
};

void compare_outputs(Group& g, const ACTOutputs& out, const Fixture& fx, const std::string& f, bool training) {
  g.close("logits", out.logits, fx.load(f + "logits.npy"));
  g.close("q_halt_logits", out.q_halt_logits, fx.load(f + "q_halt_logits.npy"));
  g.close("q_continue_logits", out.q_continue_logits, fx.load(f + "q_continue_logits.npy"));
  if (training && fx.has(f + "target_q_continue.npy"))
    g.close("target_q_continue", out.target_q_continue, fx.load(f + "target_q_continue.npy"));
}

void compare_carry(Group& g, const Carry& c, const Fixture& fx, const std::string& f) {
  g.close("z_H", c.inner.z_H, fx.load(f + "z_H.npy"));
  if (fx.has(f + "z_L.npy")) g.close("z_L", c.inner.z_L, fx.load(f + "z_L.npy"));
  g.exact("halted", c.halted, fx.load(f + "halted.npy"));
  g.exact("steps", c.steps, fx.load(f + "steps.npy"));
  g.exact("current_inputs", c.current.inputs, fx.load(f + "current_inputs.npy"));
  g.exact("current_labels", c.current.labels, fx.load(f + "current_labels.npy"));
  g.exact("current_puzzle_identifiers", c.current.puzzle_identifiers, fx.load(f + "current_puzzle_identifiers.npy"));
}

// Elements whose reference gradient is ~0 relative to the tensor's largest gradient.
torch::Tensor tiny(const torch::Tensor& grad, double ratio) {
  const torch::Tensor a = grad.abs().to(torch::kDouble);
  const double max = a.numel() ? a.max().item<double>() : 0.0;
  return a <= ratio * max;
}

// Runs segment i of training from `carry`; compares everything the fixture saved for it when `g*` are given.
struct SegmentRun {
  StepResult step;
  StateDict grads;
  torch::Tensor puzzle_grad;
};

SegmentRun run_segment(ACTModel& model, ModelOptimizer& optimizer, const Carry& carry, const Batch& batch,
                       const Fixture& fx) {
  model->train();
  optimizer.zero_grad();
  SegmentRun r{forward_backward(model, carry, batch, fx.loss, static_cast<double>(batch.size())), {}, {}};
  for (const auto& item : model->named_parameters())
    if (item.value().grad().defined()) r.grads[item.key()] = item.value().grad().clone();
  if (model->inner->puzzle_emb && model->inner->puzzle_emb->local_weights.defined())
    r.puzzle_grad = model->inner->puzzle_emb->local_weights.grad();
  optimizer.step(fx.opt.lr, fx.opt.puzzle_emb_lr);
  return r;
}

}  // namespace

VerifyResult verify_reference(const std::string& fixture_dir, const VerifyOptions& opt, std::ostream& log) {
  VerifyResult result;
  // The fixture's model decides how its reference_config reads, so a model this build lacks is reported first.
  const std::string model_name = fixture_model(fixture_dir);
  if (!has_model(model_name)) {
    result.ok = false;
    result.unsupported_model = model_name;
    log << "fixture " << fixture_dir << " is a '" << model_name << "' model, which this build does not have"
        << std::endl;
    return result;
  }
  const Fixture fx(fixture_dir);
  const ModelConfig& cfg = fx.config;
  log << "fixture " << fixture_dir << ": " << cfg.name << (cfg.mlp_t ? " (mlp_t)" : "") << ", hidden "
      << cfg.hidden_size << ", H/L layers " << cfg.H_layers << "/" << cfg.L_layers << ", H/L cycles " << cfg.H_cycles
      << "/" << cfg.L_cycles << ", " << cfg.pos_encodings << ", puzzle_emb_ndim " << cfg.puzzle_emb_ndim
      << ", halt_max_steps " << cfg.halt_max_steps << ", " << to_string(fx.loss) << ", " << cfg.forward_dtype << ", "
      << fx.segments << " training segments"
      << (fx.ema_rate >= 0 ? ", EMA " + std::to_string(fx.ema_rate) : std::string()) << std::endl;
  log << "tolerance: |ours - ref| <= " << opt.atol << " + " << opt.rtol << " * |ref|; halting, steps and data exact"
      << std::endl;

  // The reference's rounding: float32 op by op unless HRM_FUSED_KERNELS names a mode.
  const nn::FusedKernels setting = nn::fused_kernels();
  const nn::ScopedFusedKernels reference_rounding(nn::reference_fused_kernels());
  log << "CPU kernels: " << (nn::fused_kernels_cover(cfg.dtype()) ? "fused" : "LibTorch's op-by-op path") << " for "
      << cfg.resolved_forward_dtype() << " (HRM_FUSED_KERNELS=" << nn::fused_kernels_name(setting) << ")"
      << "; float32 GEMMs: " << blas_description() << std::endl;

  ACTModel model = make_model(cfg);
  const StateDict initial = fx.state("params/");
  load_model_state(model, initial, fx.dir() + "/params");

  // The published checkpoint layout must load to the same weights.
  if (fx.has("reference_state_dict.pt")) {
    const StateDict pt = load_reference_state_dict(fx.dir() + "/reference_state_dict.pt");
    Group g("reference_state_dict.pt == params", opt);
    ACTModel from_pt = make_model(cfg);
    load_model_state(from_pt, pt, fx.dir() + "/reference_state_dict.pt");
    const StateDict loaded = model_state(from_pt);
    for (const auto& [k, t] : initial)
      g.exact(k, loaded.count(k) ? (loaded.at(k) != t).sum() : torch::Tensor(), torch::zeros({}, torch::kLong));
    g.report(log, result);
  }

  // ---------------------------------------------------------------- teacher-forced replay of each segment
  for (int64_t i = 0; i < fx.segments; ++i) {
    const std::string f = "steps/" + std::to_string(i) + "/";
    const std::string seg = "train seg " + std::to_string(i) + " ";
    const Batch batch = fx.batch("steps/" + std::to_string(i));

    load_model_state(model, i == 0 ? initial : fx.state("steps/" + std::to_string(i - 1) + "/after_"), fx.dir());
    ModelOptimizer optimizer(model, fx.opt);
    if (i > 0) {
      const std::string prev = "steps/" + std::to_string(i - 1) + "/";
      for (const auto& k : fx.param_keys) {
        if (!fx.has(prev + "adam_m_" + k + ".npy")) continue;
        const std::string ours = reference_key_to_ours(k);
        optimizer.adam().exp_avg(ours) = fx.load(prev + "adam_m_" + k + ".npy");
        optimizer.adam().exp_avg_sq(ours) = fx.load(prev + "adam_v_" + k + ".npy");
      }
      optimizer.adam().set_step_count(i);
    }
    const Carry carry = i == 0 ? model->initial_carry(batch) : fx.carry_after(i - 1, batch);
    std::optional<EMA> ema;
    if (fx.ema_rate >= 0) {
      ema.emplace(model, fx.ema_rate);  // from the weights before the step: right for segment 0
      if (i > 0) ema->load(fx.state("steps/" + std::to_string(i - 1) + "/ema_", /*only_present=*/true), fx.dir());
    }
    const SegmentRun r = run_segment(model, optimizer, carry, batch, fx);
    if (ema) ema->update();

    Group out(seg + "outputs", opt);
    compare_outputs(out, r.step.outputs, fx, f, true);
    out.report(log, result);

    Group car(seg + "carry", opt);
    compare_carry(car, r.step.carry, fx, f);
    car.report(log, result);

    Group loss(seg + "loss+metrics", opt);
    loss.close("loss", r.step.loss.loss, fx.load(f + "loss.npy"));
    if (fx.manifest().contains("train_metrics") && i < static_cast<int64_t>(fx.manifest()["train_metrics"].size())) {
      for (const auto& [name, value] : fx.manifest()["train_metrics"][i].items()) {
        auto it = r.step.loss.metrics.find(name);
        if (it == r.step.loss.metrics.end())
          loss.close(name, torch::Tensor(), torch::zeros({}));
        else
          loss.scalar(name, it->second.to(torch::kDouble).item<double>(), value.get<double>());
      }
    }
    loss.report(log, result);

    Group grads(seg + "gradients", opt);
    for (const auto& k : fx.param_keys) {
      if (!fx.has(f + "grad_" + k + ".npy")) continue;
      const std::string ours = reference_key_to_ours(k);
      grads.close(ours, r.grads.count(ours) ? r.grads.at(ours) : torch::Tensor(), fx.load(f + "grad_" + k + ".npy"));
    }
    if (fx.has(f + "grad_puzzle_emb_local.npy"))
      grads.close("puzzle_emb local", r.puzzle_grad, fx.load(f + "grad_puzzle_emb_local.npy"));
    grads.report(log, result);

    Group after(seg + "weights after step", opt);
    const StateDict now = model_state(model);
    for (const auto& k : fx.param_keys) {
      const std::string ours = reference_key_to_ours(k);
      const torch::Tensor ref = fx.load(f + "after_" + k + ".npy");
      torch::Tensor skip;
      if (fx.has(f + "grad_" + k + ".npy")) {
        skip = tiny(fx.load(f + "grad_" + k + ".npy"), opt.tiny_grad_ratio);
      } else if (ours == "inner.puzzle_emb.weights" && fx.has(f + "grad_puzzle_emb_local.npy")) {
        // SignSGD sums the local gradients per identifier; rows outside the batch must stay exactly as they were.
        const torch::Tensor local = fx.load(f + "grad_puzzle_emb_local.npy").to(torch::kDouble);
        const torch::Tensor ids = fx.load(f + "current_puzzle_identifiers.npy").to(torch::kLong);
        const torch::Tensor summed = torch::zeros(ref.sizes(), torch::kDouble).index_add_(0, ids, local);
        torch::Tensor used = torch::zeros({ref.size(0)}, torch::kBool).index_fill_(0, ids, true).unsqueeze(1);
        skip = tiny(summed, opt.tiny_grad_ratio) & used;
      }
      after.close(ours, now.at(ours), ref, skip);
    }
    after.report(log, result);

    Group moments(seg + "AdamATan2 moments", opt);
    for (const auto& k : fx.param_keys) {
      if (!fx.has(f + "adam_m_" + k + ".npy")) continue;
      const std::string ours = reference_key_to_ours(k);
      moments.close("m " + ours, optimizer.adam().exp_avg(ours), fx.load(f + "adam_m_" + k + ".npy"));
      moments.close("v " + ours, optimizer.adam().exp_avg_sq(ours), fx.load(f + "adam_v_" + k + ".npy"));
    }
    moments.report(log, result);

    if (ema) {
      Group averages(seg + "EMA after step", opt);
      for (const auto& k : fx.param_keys) {
        if (!fx.has(f + "ema_" + k + ".npy")) continue;
        const std::string ours = reference_key_to_ours(k);
        const auto it = ema->weights().find(ours);
        averages.close(ours, it == ema->weights().end() ? torch::Tensor() : it->second,
                       fx.load(f + "ema_" + k + ".npy"));
      }
      averages.report(log, result);
    }
  }

  // ---------------------------------------------------------------- evaluation (weights after the last segment)
  if (fx.has("eval/batch_inputs.npy")) {
    const StateDict final_state =
        fx.segments > 0 ? fx.state("steps/" + std::to_string(fx.segments - 1) + "/after_") : initial;
    load_model_state(model, final_state, fx.dir());
    model->eval();
    torch::NoGradGuard no_grad;
    const Batch batch = fx.batch("eval");
    run_to_halt(model, batch, [&](int64_t s, const Carry& next, const ACTOutputs& out) {
      const std::string p = "eval/seg" + std::to_string(s) + "_";
      if (!fx.has(p + "logits.npy")) return;  // the fixture saved fewer segments
      Group g("eval seg " + std::to_string(s), opt);
      g.close("logits", out.logits, fx.load(p + "logits.npy"));
      g.close("q_halt_logits", out.q_halt_logits, fx.load(p + "q_halt_logits.npy"));
      g.close("q_continue_logits", out.q_continue_logits, fx.load(p + "q_continue_logits.npy"));
      g.exact("halted", next.halted, fx.load(p + "halted.npy"));
      g.report(log, result);
    });
  }

  // ---------------------------------------------------------------- free-running replay (reported, not judged)
  if (opt.free_running && fx.segments > 0) {
    ACTModel free = make_model(cfg);
    load_model_state(free, initial, fx.dir() + "/params");
    ModelOptimizer optimizer(free, fx.opt);
    Carry carry;
    double max_logit_drift = 0;
    int64_t halting_mismatch = 0;
    for (int64_t i = 0; i < fx.segments; ++i) {
      const std::string f = "steps/" + std::to_string(i) + "/";
      const Batch batch = fx.batch("steps/" + std::to_string(i));
      if (i == 0) carry = free->initial_carry(batch);
      SegmentRun r = run_segment(free, optimizer, carry, batch, fx);
      max_logit_drift = std::max(max_logit_drift, (r.step.outputs.logits.detach().to(torch::kDouble) -
                                                   fx.load(f + "logits.npy").to(torch::kDouble))
                                                      .abs()
                                                      .max()
                                                      .item<double>());
      halting_mismatch += (r.step.carry.halted != fx.load(f + "halted.npy").to(torch::kBool)).sum().item<int64_t>();
      carry = r.step.carry;
    }
    double max_weight_drift = 0;
    const StateDict final_ref = fx.state("steps/" + std::to_string(fx.segments - 1) + "/after_");
    const StateDict mine = model_state(free);
    for (const auto& [k, t] : final_ref)
      max_weight_drift =
          std::max(max_weight_drift, (mine.at(k).to(torch::kDouble) - t.to(torch::kDouble)).abs().max().item<double>());
    log << "[info] free-running replay of " << fx.segments << " segments: max |logit drift| " << std::scientific
        << std::setprecision(2) << max_logit_drift << ", max |weight drift| after the last step " << max_weight_drift
        << ", halting decisions differing " << halting_mismatch << std::endl;
  }

  log << (result.ok ? "PASS" : "FAIL") << ": " << result.groups - result.failed_groups << "/" << result.groups
      << " groups match; " << result.skipped_elements
      << " updated-weight elements with ~0 reference gradient differ (allowed)" << std::endl;
  return result;
}

}  // namespace hrm
