#pragma once
// What every fuzz target shares: the input as a file (the parsers read paths, as hrm does), and the rule that a
// parser may only fail with hrm::Error; any other exception escapes and libFuzzer reports it as a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "hrm/util/error.h"

namespace hrm::fuzz {

// The input written to a file of this process (reused across runs), named `name`.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& name) {
  static const std::string dir = [] {
    const char* t = std::getenv("TMPDIR");
    const std::string d = std::string(t ? t : "/tmp") + "/hrm-fuzz-" + std::to_string(getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `parse`; hrm::Error (a clear refusal) is an accepted outcome.
template <typename F>
void expect_parse_or_error(F&& parse) {
  try {
    parse();
  } catch (const hrm::Error&) {
  }
}

}  // namespace hrm::fuzz
