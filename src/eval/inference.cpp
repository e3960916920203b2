#include "hrm/eval/inference.h"

#include <filesystem>

#include "hrm/config/train_config.h"
#include "hrm/data/format.h"
#include "hrm/model/registry.h"
#include "hrm/train/checkpoint.h"
#include "hrm/util/error.h"
#include "hrm/util/strings.h"

namespace hrm {
namespace fs = std::filesystem;

InferenceSetup load_for_inference(const std::string& checkpoint_or_run, const std::string& data_dir,
                                  const std::string& config_path, const std::vector<std::string>& overrides,
                                  const std::string& device, const std::string& weights_choice) {
  check(weights_choice == "auto" || weights_choice == "ema" || weights_choice == "raw",
        "weights must be auto, ema or raw, got '" + weights_choice + "'");
  // A run folder means its latest checkpoint.
  const std::string checkpoint =
      fs::is_directory(checkpoint_or_run) ? latest_checkpoint(checkpoint_or_run) : checkpoint_or_run;
  InferenceSetup out;
  TrainConfig cfg;
  StateDict weights;
  ModelConfig model_config;
  bool ours = false;
  try {
    LoadedCheckpoint ck = read_checkpoint(checkpoint);
    ours = true;
    model_config = ck.config;
    weights = std::move(ck.model);
    const StateDict ema = weights_choice == "raw" ? StateDict() : ema_weights(ck);
    check(weights_choice != "ema" || !ema.empty(), checkpoint + ": --weights ema, but the checkpoint has no EMA");
    for (const auto& [k, t] : ema) weights[k] = t;
    out.ema = !ema.empty();
    if (ck.text.count("train_config"))
      cfg = TrainConfig::from_yaml(ck.text["train_config"], checkpoint + " (train_config)");
    cfg.arch = model_config;
  } catch (const Error&) {
    if (config_path.empty()) throw;  // not ours: with a config it is read as a published state dict below
  }
  if (!config_path.empty()) {
    const TrainConfig given = TrainConfig::load(config_path);
    if (!ours)
      cfg = given;
    else
      cfg.loss_type = given.loss_type;
  }
  if (!data_dir.empty()) cfg.data_path = data_dir;
  check(!cfg.data_path.empty(), checkpoint + ": no dataset known for this checkpoint (give --data DIR)");
  if (!ours) {
    // A published state dict: the model config comes from the YAML and the dataset.
    const auto meta = data::DatasetMetadata::load(cfg.data_path + "/test/dataset.json");
    model_config = cfg.arch;
    model_config.seq_len = meta.seq_len;
    model_config.vocab_size = meta.vocab_size;
    model_config.num_puzzle_identifiers = meta.num_puzzle_identifiers;
    weights = load_reference_state_dict(checkpoint);
  }
  for (const auto& o : overrides) {
    const auto [k, v] = split_assignment(o, "command line");
    if (k == "arch.loss_type" || k == "loss_type") {
      cfg.loss_type = v;
      continue;
    }
    model_config.apply_override(o, "command line");
  }
  model_config.validate("command line");
  {
    const std::string meta_path = cfg.data_path + "/test/dataset.json";
    const auto meta = data::DatasetMetadata::load(meta_path);
    if (meta.seq_len != model_config.seq_len || meta.vocab_size != model_config.vocab_size ||
        meta.num_puzzle_identifiers > model_config.num_puzzle_identifiers)
      throw Error(checkpoint + " is incompatible with " + cfg.data_path + ": the model has seq_len " +
                  std::to_string(model_config.seq_len) + ", vocab " + std::to_string(model_config.vocab_size) + ", " +
                  std::to_string(model_config.num_puzzle_identifiers) + " puzzle identifiers; the dataset has " +
                  std::to_string(meta.seq_len) + ", " + std::to_string(meta.vocab_size) + ", " +
                  std::to_string(meta.num_puzzle_identifiers));
  }
  set_auto_dtype_device(torch::Device(device).is_cuda());
  out.model = make_model(model_config);
  load_model_state(out.model, weights, checkpoint);
  out.model->to(torch::Device(device));
  out.data_path = cfg.data_path;
  out.loss_type = loss_type_from_string(cfg.loss_type);
  out.global_batch_size = cfg.global_batch_size;
  return out;
}

}  // namespace hrm
