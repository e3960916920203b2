#include "hrm/model/registry.h"

#include <functional>

#include "hrm/model/hrm.h"
#include "hrm/model/transformer.h"
#include "hrm/model/trm.h"
#include "hrm/util/error.h"

namespace hrm {
namespace {

struct Entry {
  const char* name;
  const char* published;  // the published code's `arch.name`
  std::function<std::shared_ptr<ReasoningCore>(const ModelConfig&)> make;
};

// One line per model.
const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      {"hrm", "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1",
       [](const ModelConfig& c) { return std::make_shared<HRMCore>(c); }},
      {"trm", "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
       [](const ModelConfig& c) { return std::make_shared<TRMCore>(c); }},
      {"transformer", "recursive_reasoning.transformers_baseline@Model_ACTV2",
       [](const ModelConfig& c) { return std::make_shared<TransformerCore>(c); }},
  };
  return entries;
}

const Entry* find(const std::string& name) {
  for (const auto& e : registry())
    if (name == e.name || name == e.published) return &e;
  return nullptr;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> out;
  for (const auto& e : registry()) out.emplace_back(e.name);
  return out;
}

bool has_model(const std::string& name) { return find(name) != nullptr; }

std::string canonical_model_name(const std::string& name) {
  if (const Entry* e = find(name)) return e->name;
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model '" + name + "' (this build has: " + known + ")");
}

std::shared_ptr<ReasoningCore> make_core(const ModelConfig& config) {
  return find(canonical_model_name(config.name))->make(config);
}

ACTModel make_model(const ModelConfig& config) { return ACTModel(make_core(config)); }

}  // namespace hrm
