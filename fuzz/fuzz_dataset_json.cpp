// A dataset's dataset.json and identifiers.json.
#include "fuzz_input.h"
#include "hrm/data/format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = hrm::fuzz::as_file(data, size, "dataset.json");
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::DatasetMetadata::load(path); });
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::read_identifiers(path); });
  return 0;
}
