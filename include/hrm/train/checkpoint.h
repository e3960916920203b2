#pragma once
// Model weights by name, published checkpoints, hrm's own checkpoint files and a run folder's checkpoints.
//
// Key mapping: our names are the module paths of hrm::ACTModel ("inner.H_level.layers.0.self_attn.qkv_proj.weight").
// The published implementation wraps the model in ACTLossHead (prefix "model.") and, when compiled, in
// torch.compile's OptimizedModule (prefix "_orig_mod."): "_orig_mod.model.inner.X" -> "inner.X".
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "hrm/model/act.h"

namespace hrm {

// Parameters and persistent buffers of the model (aliases, not copies).
StateDict model_state(ACTModel& model);

// Copies `state` into the model. Every model tensor must be present with the same shape; unknown keys throw
// (naming `source`, the key and the closest valid key). Dtypes are converted (float32 masters, forward-dtype buffers).
void load_model_state(ACTModel& model, const StateDict& state, const std::string& source);

// "_orig_mod.model.inner.X" / "model.inner.X" / "inner.X" -> "inner.X".
std::string reference_key_to_ours(const std::string& key);
std::string our_key_to_reference(const std::string& key);  // "inner.X" -> "model.inner.X"

// Reads a Python `torch.save` state dict (zip) and maps its keys to ours.
StateDict load_reference_state_dict(const std::string& path);

// hrm checkpoint: a torch.save-compatible zip holding {"format": "hrm-checkpoint-v1", "model_config": JSON text,
// "model": {name: tensor}, "extra": {name: tensor}, "text": {name: str}} (Python can torch.load it).
// Written atomically.
using TextDict = std::map<std::string, std::string>;
void save_checkpoint(const std::string& path, ACTModel& model, const StateDict& extra = {}, const TextDict& text = {});

struct LoadedCheckpoint {
  ModelConfig config;
  StateDict model;
  StateDict extra;
  TextDict text;
};
LoadedCheckpoint read_checkpoint(const std::string& path);
// The EMA weights a checkpoint holds (its "ema.<name>" extras), by parameter name; empty when it has none.
StateDict ema_weights(const LoadedCheckpoint& checkpoint);
// Model weights to start or run from: an hrm checkpoint (with prefer_ema, its EMA in place of the raw weights when it
// has one; *used_ema says so) or a published state dict (keys mapped); a run folder means its latest checkpoint.
StateDict read_weights(const std::string& path, bool prefer_ema, bool* used_ema = nullptr);

// Builds a model from a checkpoint (ours, or a published state dict together with `config` when given).
ACTModel load_model(const std::string& path, const ModelConfig* config = nullptr);

// A run folder's checkpoints RUN_DIR/checkpoints/step_N.pt, by step (empty when there are none).
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);
// The one with the highest step (throws when there is none).
std::string latest_checkpoint(const std::string& run_dir);
// Removes the temporary files of checkpoint writes that were killed (step_N.pt.tmp.*): the renamed ones are whole.
void remove_unfinished_checkpoints(const std::string& run_dir);

}  // namespace hrm
