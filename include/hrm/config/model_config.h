#pragma once
// The architecture config of every model of the family. Field names are the published implementations'
// (HierarchicalReasoningModel_ACTV1Config, TinyRecursiveReasoningModel_ACTV1Config, Model_ACTV2Config) so that their
// configs and checkpoints' configs load unchanged; fields a model does not use are ignored by it.
#include <cstdint>
#include <string>
#include <vector>

#include <c10/core/ScalarType.h>

namespace hrm {

struct ModelConfig {
  std::string name = "hrm";  // the model: hrm | trm | transformer (model/registry.h; published spellings too)
  int64_t batch_size = 1;    // the published config's per-process batch; kept for its configs, unused
  int64_t seq_len = 0;
  int64_t puzzle_emb_ndim = 0;  // 0: no puzzle embedding
  int64_t num_puzzle_identifiers = 1;
  int64_t vocab_size = 0;

  int64_t H_cycles = 2;  // N: high-level cycles per segment (the Transformer baseline: unused)
  int64_t L_cycles = 2;  // T: low-level steps per high-level cycle
  int64_t H_layers = 4;  // TRM: unused (one network, L_level)
  int64_t L_layers = 4;  // the Transformer baseline: unused

  int64_t hidden_size = 512;
  double expansion = 4.0;
  int64_t num_heads = 8;
  std::string pos_encodings = "rope";  // "rope" | "learned" | "none"
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;

  int64_t halt_max_steps = 16;  // M_max segments
  double halt_exploration_prob = 0.1;
  bool no_ACT_continue = false;  // halt on q_halt > 0 alone, no continue target / loss (TRM's published default)
  bool act_enabled = true;       // Transformer baseline: Q halting while training (else halt_max_steps segments)
  bool act_inference = false;    // Transformer baseline: Q halting at evaluation too

  bool mlp_t = false;          // TRM: a SwiGLU across the sequence in place of self-attention
  int64_t puzzle_emb_len = 0;  // puzzle-embedding positions; 0 = ceil(puzzle_emb_ndim / hidden_size)

  // "float32" | "bfloat16" | "auto": bfloat16 on CUDA and where the CPU's bf16 products beat float32 ones (AMX;
  // AVX512-BF16 on AMD: cpu_bf16_products_beat_float32), float32 elsewhere; resolved whenever a model is built, so a
  // checkpoint keeps "auto" and resolves again on another machine.
  std::string forward_dtype = "auto";

  // Derived quantities.
  int64_t prefix_len() const {  // positions before the sequence: the puzzle embedding
    return puzzle_emb_len > 0 ? puzzle_emb_len : (puzzle_emb_ndim + hidden_size - 1) / hidden_size;
  }
  int64_t total_seq_len() const { return seq_len + prefix_len(); }
  int64_t head_dim() const { return hidden_size / num_heads; }
  // SwiGLU width for an input of `width` features: round(expansion*width*2/3) rounded up to a multiple of 256.
  int64_t mlp_intermediate(int64_t width) const;
  int64_t mlp_intermediate() const { return mlp_intermediate(hidden_size); }
  c10::ScalarType dtype() const;               // forward_dtype, with "auto" resolved
  std::string resolved_forward_dtype() const;  // "float32" | "bfloat16"
  // For start lines: the resolved dtype, and for "auto" why, e.g. "float32 (auto: this CPU's bf16 products are not
  // faster)".
  std::string forward_dtype_description() const;

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

// Where "auto" models run: the trainer, inference and the benchmark say so before they build a model (CUDA takes
// bfloat16 as published; on a CPU it depends on the CPU).
void set_auto_dtype_device(bool cuda);

}  // namespace hrm
