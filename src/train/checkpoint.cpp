#include "hrm/train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include <torch/serialize.h>

#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/log.h"
#include "hrm/util/pickle.h"
#include "hrm/util/strings.h"
#include "hrm/util/zip.h"

namespace hrm {
namespace {
constexpr const char* kFormat = "hrm-checkpoint-v1";

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The file's bytes once its zip directory, CRC-32s and pickle program check out. LibTorch names the archive by its
// first entry's folder and reads <folder>/data.pkl and the storages <folder>/data/<key>.
std::vector<char> read_checked_bytes(const std::string& path) {
  const std::string s = read_file(path);
  const std::vector<ZipEntry> entries = check_zip_archive(s, path);
  if (entries.empty()) throw Error(path + ": an empty zip archive (torch.save writes data.pkl and storages)");
  const std::string folder = entries[0].name.substr(0, entries[0].name.find('/'));
  std::map<std::string, const ZipEntry*> by_name;
  for (const ZipEntry& e : entries) by_name[e.name] = &e;
  auto pickle = by_name.find(folder + "/data.pkl");
  if (pickle == by_name.end())
    throw Error(path + ": no " + folder + "/data.pkl in the archive (not a torch.save file)");
  check_torch_pickle(s.substr(pickle->second->offset, pickle->second->size), path + " (" + folder + "/data.pkl)",
                     [&](const std::string& key) -> std::optional<uint64_t> {
                       auto it = by_name.find(folder + "/data/" + key);
                       if (it == by_name.end()) return std::nullopt;
                       return it->second->size;
                     });
  return std::vector<char>(s.begin(), s.end());
}

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  return line.size() > 300 ? line.substr(0, 300) + "..." : line;
}

c10::IValue unpickle(const std::string& path) {
  try {
    return torch::pickle_load(read_checked_bytes(path));
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {  // its message without LibTorch's C++ backtrace (that one at --log-level debug)
    log::debug(std::string("LibTorch's error reading ") + path + ":\n" + e.what());
    throw Error(path + ": not a readable torch.save file (" + first_line(e.what_without_backtrace()) + ")");
  } catch (const std::exception& e) {
    throw Error(path + ": not a readable torch.save file (" + first_line(e.what()) + ")");
  }
}

StateDict tensor_dict(const c10::IValue& value, const std::string& what) {
  check(value.isGenericDict(), what + ": expected a dict of tensors");
  StateDict out;
  for (const auto& item : value.toGenericDict()) {
    check(item.key().isString(), what + ": dict keys must be strings");
    check(item.value().isTensor(), what + ": entry '" + item.key().toStringRef() + "' is not a tensor");
    out[item.key().toStringRef()] = item.value().toTensor();
  }
  return out;
}

c10::impl::GenericDict to_generic(const StateDict& d) {
  c10::Dict<std::string, torch::Tensor> out;
  for (const auto& [k, v] : d) out.insert(k, v.detach().to(torch::kCPU).contiguous());
  return c10::impl::toGenericDict(out);
}
}  // namespace

StateDict model_state(ACTModel& model) {
  StateDict out;
  for (const auto& item : model->named_parameters(/*recurse=*/true)) out[item.key()] = item.value();
  for (const auto& item : model->named_buffers(/*recurse=*/true)) out[item.key()] = item.value();
  return out;
}

void load_model_state(ACTModel& model, const StateDict& state, const std::string& source) {
  StateDict mine = model_state(model);
  std::vector<std::string> names;
  for (const auto& kv : mine) names.push_back(kv.first);
  // Every problem at once: a checkpoint of another architecture differs in many keys.
  std::vector<std::string> problems;
  for (const auto& [key, value] : state) {
    auto it = mine.find(key);
    if (it == mine.end()) {
      problems.push_back("unexpected tensor '" + key + "' (closest model key: '" + closest_match(key, names) + "')");
    } else if (it->second.sizes() != value.sizes()) {
      std::ostringstream ss;
      ss << "shape mismatch for '" << key << "': file has " << value.sizes() << ", model expects "
         << it->second.sizes();
      problems.push_back(ss.str());
    }
  }
  for (const auto& kv : mine)
    if (!state.count(kv.first)) problems.push_back("missing tensor '" + kv.first + "'");
  if (!problems.empty()) {
    std::string message = source + ": " + problems[0];
    const size_t shown = std::min<size_t>(problems.size(), 12);
    for (size_t i = 1; i < shown; ++i) message += "; " + problems[i];
    if (problems.size() > shown) message += "; and " + std::to_string(problems.size() - shown) + " more";
    throw Error(message);
  }
  torch::NoGradGuard no_grad;
  for (auto& [key, target] : mine) target.copy_(state.at(key));
}

std::string reference_key_to_ours(const std::string& key) {
  std::string k = key;
  if (starts_with(k, "_orig_mod.")) k = k.substr(10);
  if (starts_with(k, "model.")) k = k.substr(6);
  return k;
}

std::string our_key_to_reference(const std::string& key) { return "model." + key; }

StateDict load_reference_state_dict(const std::string& path) {
  const c10::IValue v = unpickle(path);
  StateDict out;
  for (const auto& [k, t] : tensor_dict(v, path)) out[reference_key_to_ours(k)] = t;
  return out;
}

void save_checkpoint(const std::string& path, ACTModel& model, const StateDict& extra, const TextDict& text) {
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert("format", std::string(kFormat));
  root.insert("model_config", model->config().to_json());
  root.insert("model", to_generic(model_state(model)));
  root.insert("extra", to_generic(extra));
  c10::Dict<std::string, std::string> texts;
  for (const auto& [k, v] : text) texts.insert(k, v);
  root.insert("text", c10::impl::toGenericDict(texts));
  const std::vector<char> bytes = torch::pickle_save(root);
  write_file_atomic(path, bytes.data(), bytes.size());
}

namespace {
bool is_hrm_checkpoint(const c10::IValue& v) {
  return v.isGenericDict() && v.toGenericDict().contains(c10::IValue(std::string("format")));
}

LoadedCheckpoint checkpoint_from(const c10::IValue& v, const std::string& path) {
  check(v.isGenericDict(), path + ": not an hrm checkpoint (top level is not a dict)");
  const auto root = v.toGenericDict();
  auto get = [&](const char* key) {
    auto it = root.find(c10::IValue(std::string(key)));
    if (it == root.end()) throw Error(path + ": not an hrm checkpoint (no '" + key + "' entry)");
    return it->value();
  };
  const c10::IValue format = get("format");
  check(format.isString() && format.toStringRef() == kFormat,
        path + ": unsupported checkpoint format (expected " + kFormat + ")");
  const c10::IValue cfg = get("model_config");
  check(cfg.isString(), path + ": model_config is not a string");
  LoadedCheckpoint out;
  out.config = ModelConfig::from_json(cfg.toStringRef(), path + " (model_config)");
  out.model = tensor_dict(get("model"), path + " (model)");
  out.extra = tensor_dict(get("extra"), path + " (extra)");
  const c10::IValue text = get("text");
  check(text.isGenericDict(), path + ": 'text' is not a dict");
  for (const auto& item : text.toGenericDict()) {
    check(item.key().isString() && item.value().isString(), path + ": 'text' must map strings to strings");
    out.text[item.key().toStringRef()] = item.value().toStringRef();
  }
  return out;
}
}  // namespace

LoadedCheckpoint read_checkpoint(const std::string& path) { return checkpoint_from(unpickle(path), path); }

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) != 0 || e.path().extension() != ".pt") continue;
    const std::string digits = n.substr(5, n.size() - 5 - 3);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    out.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string latest_checkpoint(const std::string& run_dir) {
  const auto all = list_checkpoints(run_dir);
  if (all.empty()) throw Error(run_dir + ": no checkpoint found in " + run_dir + "/checkpoints");
  return all.back().second;
}

void remove_unfinished_checkpoints(const std::string& run_dir) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_unfinished_write(e.path().filename().string(), ".pt")) fs::remove(e.path());
}

StateDict ema_weights(const LoadedCheckpoint& ck) {
  StateDict out;
  for (const auto& [k, v] : ck.extra)
    if (starts_with(k, "ema.")) out[k.substr(4)] = v;
  return out;
}

StateDict read_weights(const std::string& path_or_run, bool prefer_ema, bool* used_ema) {
  const std::string path = std::filesystem::is_directory(path_or_run) ? latest_checkpoint(path_or_run) : path_or_run;
  const c10::IValue v = unpickle(path);
  if (used_ema) *used_ema = false;
  if (!is_hrm_checkpoint(v)) return load_reference_state_dict(path);
  const LoadedCheckpoint ck = checkpoint_from(v, path);
  StateDict weights = ck.model;
  if (prefer_ema) {
    const StateDict ema = ema_weights(ck);
    for (const auto& [k, t] : ema) weights[k] = t;
    if (used_ema) *used_ema = !ema.empty();
  }
  return weights;
}

}  // namespace hrm
