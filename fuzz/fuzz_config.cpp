// Training configs: the YAML file with overrides (each line after a line "---overrides---" is one KEY=VALUE), the
// resolved YAML a run folder keeps, and the model config JSON a checkpoint carries.
#include <sstream>
#include <vector>

#include "fuzz_input.h"
#include "hrm/config/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::string marker = "\n---overrides---\n";
  const size_t at = text.find(marker);
  const std::string yaml = text.substr(0, at);
  std::vector<std::string> overrides;
  if (at != std::string::npos) {
    std::istringstream rest(text.substr(at + marker.size()));
    for (std::string line; std::getline(rest, line);) overrides.push_back(line);
  }
  const std::string path = hrm::fuzz::as_file(reinterpret_cast<const uint8_t*>(yaml.data()), yaml.size(), "c.yaml");
  hrm::fuzz::expect_parse_or_error([&] { hrm::TrainConfig::load(path, overrides); });
  hrm::fuzz::expect_parse_or_error([&] { hrm::TrainConfig::from_yaml(yaml, path); });
  hrm::fuzz::expect_parse_or_error([&] { hrm::ModelConfig::from_json(text, "model_config"); });
  return 0;
}
