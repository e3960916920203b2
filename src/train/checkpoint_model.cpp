// Building a model from a checkpoint: the one part of checkpoints that needs the model registry (the rest reads and
// writes files without constructing any model).
#include "hrm/model/registry.h"
#include "hrm/train/checkpoint.h"

namespace hrm {

ACTModel load_model(const std::string& path, const ModelConfig* config) {
  if (config) {  // a published state dict (or one of ours) with an explicit config
    ACTModel model = make_model(*config);
    load_model_state(model, read_weights(path, /*prefer_ema=*/false), path);
    return model;
  }
  LoadedCheckpoint ck = read_checkpoint(path);
  ACTModel model = make_model(ck.config);
  load_model_state(model, ck.model, path);
  return model;
}

}  // namespace hrm
