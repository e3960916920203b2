#include "hrm/config/train_config.h"

#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/strings.h"

namespace hrm {
namespace {
namespace fs = std::filesystem;

struct Key {
  const char* name;
  std::function<void(TrainConfig&, const std::string&)> set;  // from a scalar's text
  std::function<std::string(const TrainConfig&)> get;
};

template <typename T>
std::string text_of(const T& v) {
  if constexpr (std::is_same_v<T, bool>)
    return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>)
    return v;
  else {
    std::ostringstream ss;
    ss.precision(17);
    ss << v;
    return ss.str();
  }
}

template <typename T>
T parse_scalar(const std::string& key, const std::string& text) {
  try {
    if constexpr (std::is_same_v<T, std::string>) return text;
    YAML::Node n = YAML::Load(text);
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>) {
      const std::optional<int64_t> v = exact_int64(n.as<double>());
      if (!v || (std::is_same_v<T, uint64_t> && *v < 0)) throw std::runtime_error("");
      return static_cast<T>(*v);
    } else {
      return n.as<T>();
    }
  } catch (const std::exception&) {
    const char* kind = std::is_same_v<T, bool> ? "a boolean" : std::is_floating_point_v<T> ? "a number" : "an integer";
    throw Error(std::string("expected ") + kind + " for '" + key + "', got '" + text + "'");
  }
}

template <typename T>
Key key(const char* name, T TrainConfig::*m) {
  return Key{name, [m, name](TrainConfig& c, const std::string& v) { c.*m = parse_scalar<T>(name, v); },
             [m](const TrainConfig& c) { return text_of(c.*m); }};
}

const std::vector<Key>& table() {
  static const std::vector<Key> k = {
      key("data_path", &TrainConfig::data_path),
      key("run_dir", &TrainConfig::run_dir),
      key("global_batch_size", &TrainConfig::global_batch_size),
      key("epochs", &TrainConfig::epochs),
      key("eval_interval", &TrainConfig::eval_interval),
      key("lr", &TrainConfig::lr),
      key("lr_min_ratio", &TrainConfig::lr_min_ratio),
      key("lr_warmup_steps", &TrainConfig::lr_warmup_steps),
      key("weight_decay", &TrainConfig::weight_decay),
      key("beta1", &TrainConfig::beta1),
      key("beta2", &TrainConfig::beta2),
      key("puzzle_emb_lr", &TrainConfig::puzzle_emb_lr),
      key("puzzle_emb_weight_decay", &TrainConfig::puzzle_emb_weight_decay),
      key("seed", &TrainConfig::seed),
      key("device", &TrainConfig::device),
      key("threads", &TrainConfig::threads),
      key("checkpoint_every_eval", &TrainConfig::checkpoint_every_eval),
      key("keep_checkpoints", &TrainConfig::keep_checkpoints),
      key("checkpoint_every_steps", &TrainConfig::checkpoint_every_steps),
      key("checkpoint_every_minutes", &TrainConfig::checkpoint_every_minutes),
      key("log_every", &TrainConfig::log_every),
      key("max_steps", &TrainConfig::max_steps),
      key("time_limit_minutes", &TrainConfig::time_limit_minutes),
      key("fit_time_limit", &TrainConfig::fit_time_limit),
      key("name", &TrainConfig::name),
      key("ema", &TrainConfig::ema),
      key("ema_rate", &TrainConfig::ema_rate),
      key("init_from", &TrainConfig::init_from),
      key("freeze_weights", &TrainConfig::freeze_weights),
      key("dist.backend", &TrainConfig::dist_backend),
      key("dist.timeout_s", &TrainConfig::dist_timeout_s),
      key("dist.bucket_mb", &TrainConfig::dist_bucket_mb),
  };
  return k;
}

// Data-dependent model fields: set from the dataset, never from configs.
const std::vector<std::string> kDataKeys = {"batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers"};

std::vector<std::string> arch_keys() {
  std::vector<std::string> k{"loss_type"};
  for (const auto& m : ModelConfig::keys())
    if (std::find(kDataKeys.begin(), kDataKeys.end(), m) == kDataKeys.end()) k.push_back(m);
  return k;
}

std::string scalar_text(const YAML::Node& n, const std::string& key, const std::string& source) {
  if (!n.IsScalar()) throw Error(source + ": '" + key + "' must be a scalar value");
  return n.Scalar();
}

void set_arch(TrainConfig& c, const std::string& k, const std::string& v, const std::string& source) {
  if (k == "loss_type") {
    c.loss_type = v;
    return;
  }
  if (std::find(kDataKeys.begin(), kDataKeys.end(), k) != kDataKeys.end())
    throw Error(source + ": 'arch." + k + "' comes from the dataset and cannot be set");
  const auto keys = arch_keys();
  if (std::find(keys.begin(), keys.end(), k) == keys.end())
    throw Error(source + ": unknown key 'arch." + k + "' (did you mean 'arch." + closest_match(k, keys) + "'?)");
  c.arch.set(k, v, source);
}

void set_top(TrainConfig& c, const std::string& k, const std::string& v, const std::string& source) {
  for (const auto& e : table())
    if (k == e.name) {
      try {
        e.set(c, v);
      } catch (const Error& err) {
        throw Error(source + ": " + err.what());
      }
      return;
    }
  throw Error(source + ": unknown key '" + k + "' (did you mean '" + closest_match(k, TrainConfig::keys()) + "'?)");
}

void apply_arch_map(TrainConfig& c, const YAML::Node& arch, const std::string& source) {
  if (!arch) return;
  if (!arch.IsMap()) throw Error(source + ": 'arch' must be a mapping");
  for (const auto& kv : arch) {
    const std::string k = kv.first.as<std::string>();
    if (k == "loss" && kv.second.IsMap()) {  // the published layout: loss: {name: ..., loss_type: ...}
      if (kv.second["loss_type"]) set_arch(c, "loss_type", kv.second["loss_type"].as<std::string>(), source);
      continue;
    }
    set_arch(c, k, scalar_text(kv.second, "arch." + k, source), source);
  }
}

void apply_top_map(TrainConfig& c, const YAML::Node& root, const std::string& source) {
  for (const auto& kv : root) {
    const std::string k = kv.first.as<std::string>();
    if (k == "defaults" || k == "arch") continue;
    if (k == "dist" && kv.second.IsMap()) {  // dist: {backend: gloo} is dist.backend: gloo
      for (const auto& d : kv.second) {
        const std::string dk = "dist." + d.first.as<std::string>();
        set_top(c, dk, scalar_text(d.second, dk, source), source);
      }
      continue;
    }
    set_top(c, k, scalar_text(kv.second, k, source), source);
  }
}

// yaml-cpp keeps both entries of a repeated key: iterating saw the last (a second `lr:` won), lookups the first (a
// second `arch:` block was ignored). Either is a silent surprise, so a repeated key is an error.
void reject_duplicate_keys(const YAML::Node& n, const std::string& source) {
  if (n.IsMap()) {
    std::map<std::string, int> first_line;
    for (const auto& kv : n) {
      if (kv.first.IsScalar()) {
        const std::string k = kv.first.Scalar();
        const int line = kv.first.Mark().line + 1;
        const auto [it, inserted] = first_line.emplace(k, line);
        if (!inserted)
          throw Error(source + ":" + std::to_string(line) + ": duplicate key '" + k + "' (first at line " +
                      std::to_string(it->second) + ")");
      }
      reject_duplicate_keys(kv.second, source);
    }
  } else if (n.IsSequence()) {
    for (const auto& item : n) reject_duplicate_keys(item, source);
  }
}

YAML::Node load_yaml(const std::string& path) {
  try {
    YAML::Node n = YAML::LoadFile(path);
    if (!n.IsMap()) throw Error(path + ": the config must be a YAML mapping");
    reject_duplicate_keys(n, path);
    return n;
  } catch (const YAML::BadFile&) {
    throw Error("cannot open config " + path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": invalid YAML: " + e.what());
  }
}

// Model defaults before any arch file: the paper's architecture in bf16.
TrainConfig base() {
  TrainConfig c;
  c.arch.seq_len = 1;
  c.arch.vocab_size = 1;
  return c;
}
}  // namespace

std::vector<std::string> TrainConfig::keys() {
  std::vector<std::string> k;
  for (const auto& e : table()) k.emplace_back(e.name);
  for (const auto& a : arch_keys()) k.push_back("arch." + a);
  return k;
}

TrainConfig TrainConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  const YAML::Node root = load_yaml(path);
  TrainConfig c = base();
  c.name = fs::path(path).stem().string();
  if (const YAML::Node d = root["defaults"]) {
    // defaults: {arch: NAME} or [{arch: NAME}] -> <config dir>/arch/NAME.yaml (or ../arch for configs in subfolders)
    std::string arch_name;
    if (d.IsMap() && d["arch"])
      arch_name = d["arch"].as<std::string>();
    else if (d.IsSequence())
      for (const auto& item : d)
        if (item.IsMap() && item["arch"]) arch_name = item["arch"].as<std::string>();
    if (arch_name.empty()) throw Error(path + ": 'defaults' must name an arch, e.g. defaults: {arch: hrm_v1}");
    fs::path arch_path = fs::path(path).parent_path() / "arch" / (arch_name + ".yaml");
    if (!fs::exists(arch_path)) arch_path = fs::path(path).parent_path().parent_path() / "arch" / (arch_name + ".yaml");
    if (!fs::exists(arch_path))
      throw Error(path + ": arch '" + arch_name + "' not found (looked for " + arch_path.string() + ")");
    const YAML::Node arch = load_yaml(arch_path.string());
    apply_arch_map(c, arch, arch_path.string());
  }
  apply_top_map(c, root, path);
  apply_arch_map(c, root["arch"], path);
  for (const auto& o : overrides) c.apply_override(o, "command line");
  c.validate(path);
  c.source = overrides.empty() ? path : path + " with the command line's overrides";
  return c;
}

TrainConfig TrainConfig::from_yaml(const std::string& yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw Error(source + ": invalid YAML: " + e.what());
  }
  if (!root.IsMap()) throw Error(source + ": the config must be a YAML mapping");
  reject_duplicate_keys(root, source);
  TrainConfig c = base();
  apply_top_map(c, root, source);
  apply_arch_map(c, root["arch"], source);
  c.source = source;
  return c;
}

void TrainConfig::apply_override(const std::string& assignment, const std::string& source) {
  const auto [k, v] = split_assignment(assignment, source);
  if (k.rfind("arch.", 0) == 0)
    set_arch(*this, k.substr(5), v, source);
  else
    set_top(*this, k, v, source);
}

std::string TrainConfig::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const auto& e : table()) out << YAML::Key << e.name << YAML::Value << e.get(*this);
  out << YAML::Key << "arch" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "loss_type" << YAML::Value << loss_type;
  YAML::Node arch = YAML::Load(this->arch.to_json());  // JSON is YAML
  for (const auto& kv : arch) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(kDataKeys.begin(), kDataKeys.end(), k) != kDataKeys.end()) continue;
    out << YAML::Key << k << YAML::Value << kv.second.Scalar();
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

void TrainConfig::validate(const std::string& source) const {
  auto req = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(source + ": " + what);
  };
  req(global_batch_size >= 1, "global_batch_size must be >= 1");
  req(epochs >= 1, "epochs must be >= 1");
  req(eval_interval >= 0, "eval_interval must be >= 0");
  req(eval_interval == 0 || epochs % eval_interval == 0,
      "eval_interval must divide epochs (as in the published trainer)");
  req(lr >= 0 && puzzle_emb_lr >= 0, "learning rates must be >= 0");
  req(lr_min_ratio >= 0 && lr_min_ratio <= 1, "lr_min_ratio must be in [0, 1]");
  req(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "beta1 and beta2 must be in [0, 1)");
  req(lr_warmup_steps >= 0, "lr_warmup_steps must be >= 0");
  req(weight_decay >= 0 && puzzle_emb_weight_decay >= 0, "weight decays must be >= 0");
  req(threads >= 0, "threads must be >= 0 (0: all cores)");
  req(log_every >= 0, "log_every must be >= 0 (0: ~100 lines per run)");
  req(max_steps >= 0, "max_steps must be >= 0 (0: run to the end)");
  req(time_limit_minutes >= 0, "time_limit_minutes must be >= 0 (0: none)");
  req(keep_checkpoints >= 1, "keep_checkpoints must be >= 1");
  req(checkpoint_every_steps >= 0 && checkpoint_every_minutes >= 0,
      "checkpoint_every_steps and checkpoint_every_minutes must be >= 0");
  req(ema_rate >= 0 && ema_rate <= 1, "ema_rate must be in [0, 1]");
  req(dist_backend == "auto" || dist_backend == "gloo" || dist_backend == "nccl",
      "dist.backend must be auto, gloo or nccl");
  req(dist_timeout_s > 0 && dist_bucket_mb > 0, "dist.timeout_s and dist.bucket_mb must be > 0");
  req(!freeze_weights || arch.puzzle_emb_ndim > 0,
      "freeze_weights trains the puzzle embeddings alone, but arch.puzzle_emb_ndim is 0");
  req(device == "auto" || device == "cpu" || device.rfind("cuda", 0) == 0, "device must be auto, cpu or cuda[:N]");
  req(loss_type == "stablemax_cross_entropy" || loss_type == "softmax_cross_entropy",
      "arch.loss_type must be stablemax_cross_entropy or softmax_cross_entropy");
  ModelConfig m = arch;
  m.seq_len = std::max<int64_t>(1, m.seq_len);
  m.vocab_size = std::max<int64_t>(1, m.vocab_size);
  m.validate(source + " (arch)");
}

}  // namespace hrm
