#include "hrm/config/model_config.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <functional>
#include <utility>

#include <nlohmann/json.hpp>

#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/strings.h"

namespace hrm {
namespace {

using Json = nlohmann::json;

// One row per field: how to read it from JSON and from text, and how to write it.
struct Field {
  const char* name;
  std::function<void(ModelConfig&, const Json&)> from_json;
  std::function<void(const ModelConfig&, Json&)> to_json;
};

// A JSON number as an int64: integers in range, and floats that are whole numbers in range.
std::optional<int64_t> json_int64(const Json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) return exact_int64(v.get<double>());
  return std::nullopt;
}

template <typename T>
Field field(const char* name, T ModelConfig::*member) {
  return Field{name,
               [member, name](ModelConfig& c, const Json& v) {
                 if constexpr (std::is_same_v<T, bool>) {
                   if (!v.is_boolean()) throw Error(std::string("expected a boolean for '") + name + "'");
                 } else if constexpr (std::is_same_v<T, int64_t>) {
                   if (!json_int64(v)) throw Error(std::string("expected an integer for '") + name + "'");
                 } else if constexpr (std::is_same_v<T, double>) {
                   if (!v.is_number()) throw Error(std::string("expected a number for '") + name + "'");
                 } else {
                   if (!v.is_string()) throw Error(std::string("expected a string for '") + name + "'");
                 }
                 if constexpr (std::is_same_v<T, int64_t>)
                   c.*member = *json_int64(v);
                 else
                   c.*member = v.get<T>();
               },
               [member, name](const ModelConfig& c, Json& out) { out[name] = c.*member; }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      field("batch_size", &ModelConfig::batch_size),
      field("seq_len", &ModelConfig::seq_len),
      field("puzzle_emb_ndim", &ModelConfig::puzzle_emb_ndim),
      field("num_puzzle_identifiers", &ModelConfig::num_puzzle_identifiers),
      field("vocab_size", &ModelConfig::vocab_size),
      field("H_cycles", &ModelConfig::H_cycles),
      field("L_cycles", &ModelConfig::L_cycles),
      field("H_layers", &ModelConfig::H_layers),
      field("L_layers", &ModelConfig::L_layers),
      field("hidden_size", &ModelConfig::hidden_size),
      field("expansion", &ModelConfig::expansion),
      field("num_heads", &ModelConfig::num_heads),
      field("pos_encodings", &ModelConfig::pos_encodings),
      field("rms_norm_eps", &ModelConfig::rms_norm_eps),
      field("rope_theta", &ModelConfig::rope_theta),
      field("halt_max_steps", &ModelConfig::halt_max_steps),
      field("halt_exploration_prob", &ModelConfig::halt_exploration_prob),
      field("no_ACT_continue", &ModelConfig::no_ACT_continue),
      field("forward_dtype", &ModelConfig::forward_dtype),
      field("name", &ModelConfig::name),
      field("act_enabled", &ModelConfig::act_enabled),
      field("act_inference", &ModelConfig::act_inference),
      field("mlp_t", &ModelConfig::mlp_t),
      field("puzzle_emb_len", &ModelConfig::puzzle_emb_len),
  };
  return f;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : fields())
    if (key == f.name) return &f;
  return nullptr;
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& source) {
  throw Error(source + ": unknown model config key '" + key + "' (did you mean '" +
              closest_match(key, ModelConfig::keys()) + "'?)");
}

}  // namespace

std::vector<std::string> ModelConfig::keys() {
  std::vector<std::string> k;
  for (const auto& f : fields()) k.emplace_back(f.name);
  return k;
}

int64_t ModelConfig::mlp_intermediate(int64_t width) const {
  // Python's round() rounds half to even.
  const double x = expansion * static_cast<double>(width) * 2.0 / 3.0;
  const auto r = static_cast<int64_t>(std::nearbyint(x));
  return (r + 255) / 256 * 256;
}

namespace {
std::atomic<bool> g_auto_on_cuda{false};
}  // namespace

void set_auto_dtype_device(bool cuda) { g_auto_on_cuda = cuda; }

namespace {
// What "auto" resolves to here, and why.
std::pair<const char*, const char*> resolve_auto_dtype() {
  if (g_auto_on_cuda) return {"bfloat16", "CUDA"};
  if (cpu_bf16_products_beat_float32()) return {"bfloat16", "this CPU's bf16 products beat float32"};
  return {"float32", cpu_has_native_bf16() ? "this CPU's bf16 products are not faster" : "no native bf16"};
}
}  // namespace

std::string ModelConfig::resolved_forward_dtype() const {
  return forward_dtype == "auto" ? resolve_auto_dtype().first : forward_dtype;
}

std::string ModelConfig::forward_dtype_description() const {
  if (forward_dtype != "auto") return forward_dtype;
  const auto [dtype, why] = resolve_auto_dtype();
  return std::string(dtype) + " (auto: " + why + ")";
}

c10::ScalarType ModelConfig::dtype() const {
  const std::string d = resolved_forward_dtype();
  if (d == "float32") return c10::kFloat;
  if (d == "bfloat16") return c10::kBFloat16;
  throw Error("forward_dtype must be float32, bfloat16 or auto, got '" + forward_dtype + "'");
}

void ModelConfig::validate(const std::string& source) const {
  auto req = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(source + ": " + what);
  };
  req(!name.empty(), "name must name a model (e.g. hrm)");
  req(batch_size >= 1, "batch_size must be >= 1");
  req(seq_len >= 1, "seq_len must be >= 1");
  req(vocab_size >= 1, "vocab_size must be >= 1");
  req(puzzle_emb_ndim >= 0, "puzzle_emb_ndim must be >= 0");
  req(num_puzzle_identifiers >= 1, "num_puzzle_identifiers must be >= 1");
  req(H_cycles >= 1 && L_cycles >= 1, "H_cycles and L_cycles must be >= 1");
  req(H_layers >= 0 && L_layers >= 0, "H_layers and L_layers must be >= 0 (each model needs its own >= 1)");
  req(puzzle_emb_len >= 0, "puzzle_emb_len must be >= 0");
  req(puzzle_emb_len == 0 || puzzle_emb_len * hidden_size >= puzzle_emb_ndim,
      "puzzle_emb_len * hidden_size must hold puzzle_emb_ndim");
  req(hidden_size >= 1 && num_heads >= 1 && hidden_size % num_heads == 0,
      "hidden_size must be a positive multiple of num_heads");
  req(expansion > 0 && expansion <= 1024, "expansion must be in (0, 1024]");
  req(pos_encodings == "rope" || pos_encodings == "learned" || pos_encodings == "none",
      "pos_encodings must be 'rope', 'learned' or 'none', got '" + pos_encodings + "'");
  req(pos_encodings != "rope" || head_dim() % 2 == 0, "RoPE needs an even head dimension");
  // theta^(-2i/d) with theta <= 0 is NaN: the first step's loss was non-finite.
  req(pos_encodings != "rope" || (rope_theta > 0 && std::isfinite(rope_theta)), "rope_theta must be > 0 with RoPE");
  req(halt_max_steps >= 1, "halt_max_steps must be >= 1");
  req(halt_exploration_prob >= 0 && halt_exploration_prob <= 1, "halt_exploration_prob must be in [0, 1]");
  req(rms_norm_eps > 0, "rms_norm_eps must be > 0");
  req(forward_dtype == "float32" || forward_dtype == "bfloat16" || forward_dtype == "auto",
      "forward_dtype must be float32, bfloat16 or auto, got '" + forward_dtype + "'");
}

void ModelConfig::set(const std::string& key, const std::string& value, const std::string& source) {
  const Field* f = find_field(key);
  if (!f) unknown_key(key, source);
  Json v;
  try {
    v = Json::parse(value);  // numbers, true/false
  } catch (const std::exception&) {
    v = value;  // plain strings
  }
  if (v.is_string() && (value == "True" || value == "False")) v = value == "True";
  try {
    f->from_json(*this, v);
  } catch (const Error& e) {
    throw Error(source + ": " + e.what() + ", got '" + value + "'");
  }
}

void ModelConfig::apply_override(const std::string& assignment, const std::string& source) {
  const Assignment kv = split_assignment(assignment, source);
  set(kv.key.rfind("arch.", 0) == 0 ? kv.key.substr(5) : kv.key, kv.value, source);
}

ModelConfig ModelConfig::from_json(const std::string& json_text, const std::string& source,
                                   const std::vector<std::string>& ignored_keys) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const std::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(source + ": the model config must be a JSON object");
  ModelConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find(ignored_keys.begin(), ignored_keys.end(), it.key()) != ignored_keys.end()) continue;
    const Field* f = find_field(it.key());
    if (!f) unknown_key(it.key(), source);
    try {
      f->from_json(c, it.value());
    } catch (const Error& e) {
      throw Error(source + ": " + e.what() + ", got " + it.value().dump());
    }
  }
  // Keys every model needs; each model checks the ones it uses (e.g. HRM: H_layers and L_layers >= 1).
  for (const char* required : {"seq_len", "vocab_size", "hidden_size", "num_heads", "halt_max_steps"}) {
    if (!j.contains(required)) throw Error(source + ": missing model config key '" + std::string(required) + "'");
  }
  c.validate(source);
  return c;
}

std::string ModelConfig::to_json() const {
  Json out = Json::object();
  for (const auto& f : fields()) f.to_json(*this, out);
  return out.dump(1);
}

}  // namespace hrm
