// Checkpoint files: hrm's own and published torch.save state dicts, read as `hrm eval --checkpoint` reads them.
#include "fuzz_input.h"
#include "hrm/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = hrm::fuzz::as_file(data, size, "checkpoint.pt");
  hrm::fuzz::expect_parse_or_error([&] {
    bool used_ema = false;
    for (const auto& [name, t] : hrm::read_weights(path, /*prefer_ema=*/true, &used_ema)) t.sum();  // touch it all
  });
  return 0;
}
