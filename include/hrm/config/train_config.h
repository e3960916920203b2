#pragma once
// Training configs: YAML files in configs/, composed like the published hydra setup:
//   defaults: {arch: hrm_v1}   -> configs/arch/hrm_v1.yaml provides the `arch` section
//   arch: {...}                -> overrides of the arch file
//   key: value                 -> training keys
// then command-line overrides `key=value` and `arch.key=value`. Unknown keys and wrong types are errors naming the
// key, the file and the closest valid key.
#include <cstdint>
#include <string>
#include <vector>

#include "hrm/config/model_config.h"

namespace hrm {

struct TrainConfig {
  std::string name;    // the config file's stem (for the default run folder)
  std::string source;  // where it was read from (load/from_yaml), for errors found later; not written to YAML
  std::string data_path;
  std::string run_dir;  // default runs/<name>-<timestamp>
  int64_t global_batch_size = 768;
  int64_t epochs = 100000;
  int64_t eval_interval = 0;  // epochs between evaluations; 0 = only at the end
  double lr = 1e-4;
  double lr_min_ratio = 1.0;
  int64_t lr_warmup_steps = 2000;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double puzzle_emb_lr = 1e-2;
  double puzzle_emb_weight_decay = 0.1;
  uint64_t seed = 0;
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  int64_t threads = 0;          // intra-op CPU threads; 0 = all cores
  bool checkpoint_every_eval = true;
  int64_t keep_checkpoints = 3;
  int64_t checkpoint_every_steps = 0;   // also a checkpoint every N steps; 0 = off
  double checkpoint_every_minutes = 0;  // also a checkpoint when this long has passed since the last; 0 = off
  int64_t log_every = 0;                // plain log line every N steps when not on a terminal; 0 = ~100 lines per run
  int64_t max_steps = 0;          // stop (with a checkpoint) after this many steps; 0 = run to the end. The learning
                                  // rate schedule still spans the whole run.
  double time_limit_minutes = 0;  // stop (with a checkpoint and a final evaluation) after this long; 0 = none
  bool fit_time_limit = false;    // with time_limit_minutes: after the first steps, shorten the run (and its learning
                                  // rate schedule) to the steps the measured throughput fits into the limit
  bool ema = false;               // keep an EMA of the weights; evaluation uses it, checkpoints hold both
  double ema_rate = 0.999;        // ema = rate * ema + (1 - rate) * weights, after every optimizer step
  std::string init_from;          // start from this checkpoint's weights (hrm checkpoint, run folder or published)
  bool freeze_weights = false;    // train the puzzle embeddings alone (every other weight stays bit-identical)
  // Data-parallel runs (launched by torchrun, Slurm or their environment variables; docs/distributed.md).
  std::string dist_backend = "auto";  // dist.backend: auto (nccl on CUDA, gloo on CPU) | gloo | nccl
  double dist_timeout_s = 300;        // dist.timeout_s: rendezvous and every collective; a dead peer fails sooner
  double dist_bucket_mb = 4;          // dist.bucket_mb: gradient all-reduce bucket size
  std::string loss_type = "stablemax_cross_entropy";  // arch.loss_type
  ModelConfig arch;  // data-dependent fields (seq_len, vocab_size, ...) are set from the dataset

  // Loads CONFIG.yaml with its arch defaults and applies overrides ("key=value", "arch.key=value").
  static TrainConfig load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Parses a resolved config (as written by to_yaml) without defaults lookup.
  static TrainConfig from_yaml(const std::string& yaml_text, const std::string& source);
  void apply_override(const std::string& assignment, const std::string& source);
  std::string to_yaml() const;  // fully resolved
  void validate(const std::string& source) const;
  static std::vector<std::string> keys();
};

}  // namespace hrm
