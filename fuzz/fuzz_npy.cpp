// NumPy .npy files: header and data.
#include "fuzz_input.h"
#include "hrm/data/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = hrm::fuzz::as_file(data, size, "input.npy");
  hrm::fuzz::expect_parse_or_error([&] { hrm::npy::load(path); });
  return 0;
}
