#pragma once
// The HRM architecture config. Field names are the published implementation's (HierarchicalReasoningModel_ACTV1Config)
// so that its configs and checkpoints' configs load unchanged.
#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace hrm {

struct ModelConfig {
  std::string name = "hrm";  // the model (model/registry.h); written to JSON only when not hrm
  int64_t batch_size = 1;    // the published config's per-process batch; kept for its configs, unused
  int64_t seq_len = 0;
  int64_t puzzle_emb_ndim = 0;  // 0: no puzzle embedding
  int64_t num_puzzle_identifiers = 1;
  int64_t vocab_size = 0;

  int64_t H_cycles = 2;  // N: high-level cycles per segment
  int64_t L_cycles = 2;  // T: low-level steps per high-level cycle
  int64_t H_layers = 4;
  int64_t L_layers = 4;

  int64_t hidden_size = 512;
  double expansion = 4.0;
  int64_t num_heads = 8;
  std::string pos_encodings = "rope";  // "rope" | "learned"
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;

  int64_t halt_max_steps = 16;  // M_max segments
  double halt_exploration_prob = 0.1;
  bool no_ACT_continue = false;  // TRM variant: halt on q_halt > 0 alone, no continue target / loss

  std::string forward_dtype = "bfloat16";  // "float32" | "bfloat16"

  // Derived quantities.
  int64_t puzzle_emb_len() const { return (puzzle_emb_ndim + hidden_size - 1) / hidden_size; }  // prefix positions
  int64_t total_seq_len() const { return seq_len + puzzle_emb_len(); }
  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t mlp_intermediate() const;  // round(expansion*hidden*2/3) rounded up to a multiple of 256
  c10::ScalarType dtype() const;

  // Throws hrm::Error (prefixed by `source`) when the values are inconsistent.
  void validate(const std::string& source = "model config") const;

  // Sets one field from a textual value (YAML / command-line overrides). Unknown keys and wrong types throw,
  // naming the key, the source and the closest valid key.
  void set(const std::string& key, const std::string& value, const std::string& source);
  // "key=value" or "arch.key=value" (command-line overrides); errors as set().
  void apply_override(const std::string& assignment, const std::string& source);

  // JSON object text <-> config. Unknown keys throw (keys in `ignored_keys` are accepted and skipped).
  static ModelConfig from_json(const std::string& json_text, const std::string& source,
                               const std::vector<std::string>& ignored_keys = {"causal", "loss"});
  std::string to_json() const;

  static std::vector<std::string> keys();
};

}  // namespace hrm
