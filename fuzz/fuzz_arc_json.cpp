// ARC tasks: one task file (as `hrm solve --arc` and the folder reader take it) and Kaggle combined files (the input
// up to its first NUL byte is PREFIX_x_challenges.json, the rest PREFIX_x_solutions.json).
#include <cstring>

#include "fuzz_input.h"
#include "hrm/data/arc.h"
#include "hrm/data/task.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string task = hrm::fuzz::as_file(data, size, "task.json");
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::parse_arc_task(task, {"<blank>", "task"}); });
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t split = nul ? static_cast<size_t>(nul - data) : size;
  const std::string challenges = hrm::fuzz::as_file(data, split, "kaggle_x_challenges.json");
  hrm::fuzz::as_file(data + std::min(size, split + 1), size - std::min(size, split + 1), "kaggle_x_solutions.json");
  const std::string prefix = challenges.substr(0, challenges.size() - std::strlen("_x_challenges.json"));
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::read_arc_kaggle(prefix, "x"); });
  return 0;
}
