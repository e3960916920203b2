#pragma once
// Models by name: `arch.name` in a config (default hrm) selects the ReasoningCore the ACT wrapper runs.
#include <memory>
#include <string>
#include <vector>

#include "hrm/model/act.h"

namespace hrm {

// The registered name for `name` (a registered name or a published spelling such as
// "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1"); throws hrm::Error listing the known names.
std::string canonical_model_name(const std::string& name);
bool has_model(const std::string& name);
std::vector<std::string> model_names();

// A new model of config.name with freshly initialised weights (from the global generator).
std::shared_ptr<ReasoningCore> make_core(const ModelConfig& config);
ACTModel make_model(const ModelConfig& config);

}  // namespace hrm
