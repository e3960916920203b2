#pragma once
// A model ready for inference: from an hrm checkpoint or a run folder (its latest checkpoint), whose saved training
// config gives data_path and loss, or from a published state dict plus a training config YAML (`config_path`) and
// a dataset (`data_dir`).
#include <cstdint>
#include <string>
#include <vector>

#include "hrm/loss/act_loss.h"
#include "hrm/model/act.h"

namespace hrm {

struct InferenceSetup {
  ACTModel model{nullptr};
  std::string data_path;
  LossType loss_type = LossType::StablemaxCrossEntropy;
  int64_t global_batch_size = 256;
  bool ema = false;  // the model holds the checkpoint's EMA weights
};

// `overrides` ("arch.halt_max_steps=32", "halt_max_steps=32", "arch.loss_type=...") apply to the model config
// before the model is built (the weights must still fit). `weights`: "auto" (the EMA when the checkpoint has one),
// "ema" (an error without one) or "raw".
InferenceSetup load_for_inference(const std::string& checkpoint, const std::string& data_dir,
                                  const std::string& config_path, const std::vector<std::string>& overrides,
                                  const std::string& device, const std::string& weights = "auto");

}  // namespace hrm
