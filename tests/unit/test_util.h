#pragma once
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "hrm/hrm.h"

namespace hrm::test {

inline std::string shared_dir() { return HRM_SHARED_DIR; }
// The reference fixtures: $HRM_FIXTURE_DIR when set, else the folder CMake was configured with.
inline std::string fixtures_root() {
  const char* env = std::getenv("HRM_FIXTURE_DIR");
  return env && *env ? env : HRM_FIXTURE_DIR;
}
inline std::string fixture_dir() { return fixtures_root() + "/hrm_small_rope"; }
inline bool have_fixture() { return std::filesystem::exists(fixture_dir() + "/manifest.json"); }

// A fresh temporary folder, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("hrm_test_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A small float32 config exercising every part of the model.
inline ModelConfig tiny_config() {
  ModelConfig c;
  c.batch_size = 4;
  c.seq_len = 9;
  c.puzzle_emb_ndim = 16;
  c.num_puzzle_identifiers = 5;
  c.vocab_size = 6;
  c.H_cycles = 2;
  c.L_cycles = 2;
  c.H_layers = 1;
  c.L_layers = 1;
  c.hidden_size = 16;
  c.expansion = 2;
  c.num_heads = 2;
  c.pos_encodings = "rope";
  c.halt_max_steps = 3;
  c.halt_exploration_prob = 0;
  c.forward_dtype = "float32";
  return c;
}

inline Batch random_batch(const ModelConfig& c, int64_t B, uint64_t seed = 0) {
  torch::manual_seed(seed);
  return Batch{torch::randint(1, c.vocab_size, {B, c.seq_len}, torch::kInt),
               torch::randint(1, c.vocab_size, {B, c.seq_len}, torch::kInt),
               torch::randint(0, c.num_puzzle_identifiers, {B}, torch::kInt)};
}

// configs/arch/tiny.yaml (a hidden-64 1+1-layer bf16 HRM) and configs/toy.yaml training it on `data` in `dir`.
inline std::string write_toy_config(const std::string& dir, const std::string& data, const std::string& extra = "") {
  std::filesystem::create_directories(dir + "/configs/arch");
  std::ofstream(dir + "/configs/arch/tiny.yaml") << "loss_type: stablemax_cross_entropy\nhalt_exploration_prob: 0.1\n"
                                                    "halt_max_steps: 3\nH_cycles: 2\nL_cycles: 2\nH_layers: 1\n"
                                                    "L_layers: 1\nhidden_size: 64\nnum_heads: 4\nexpansion: 2\n"
                                                    "puzzle_emb_ndim: 0\npos_encodings: rope\nforward_dtype: auto\n";
  // `extra` replaces the base lines of the top-level keys it sets (a key given twice is a config error).
  const std::vector<std::string> base = {"defaults: {arch: tiny}",
                                         "data_path: " + data,
                                         "global_batch_size: 32",
                                         "epochs: 12",
                                         "eval_interval: 6",
                                         "lr: 3e-3",
                                         "lr_min_ratio: 0.1",
                                         "lr_warmup_steps: 10",
                                         "weight_decay: 0.1",
                                         "puzzle_emb_lr: 1e-2",
                                         "seed: 5",
                                         "threads: 2"};
  const auto key_of = [](const std::string& line) { return line.substr(0, line.find(':')); };
  std::vector<std::string> extra_keys;
  std::istringstream lines(extra);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line[0] != ' ' && line.find(':') != std::string::npos) extra_keys.push_back(key_of(line));
  std::ofstream out(dir + "/configs/toy.yaml");
  for (const std::string& line : base)
    if (std::find(extra_keys.begin(), extra_keys.end(), key_of(line)) == extra_keys.end()) out << line << "\n";
  out << extra;
  return dir + "/configs/toy.yaml";
}

// The message of the hrm::Error that f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hrm::Error& e) {
    return e.what();
  }
  return "";
}

#define HRM_REQUIRE_FIXTURE()       \
  if (!::hrm::test::have_fixture()) \
  GTEST_SKIP() << "reference fixture not found at " << ::hrm::test::fixture_dir() << " (../shared is absent): skipped"

}  // namespace hrm::test
