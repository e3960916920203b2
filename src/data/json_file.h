#pragma once
// Internal to the library (nlohmann stays out of the public headers): a JSON file parsed, or an hrm::Error naming
// the file and the parser's complaint.
#include <string>

#include <nlohmann/json.hpp>

#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::data {

inline nlohmann::json parse_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace hrm::data
