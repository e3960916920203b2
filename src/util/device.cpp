#include "hrm/util/device.h"

#include <algorithm>
#include <thread>

#include <torch/torch.h>

#include "hrm/util/error.h"
#include "hrm/util/memory.h"

namespace hrm {

std::string resolve_device(const std::string& device) {
  if (device == "auto") return torch::cuda::is_available() ? "cuda" : "cpu";
  if (device.rfind("cuda", 0) == 0 && !torch::cuda::is_available())
    throw Error("device '" + device + "' requested, but this LibTorch build has no usable CUDA");
  return device;
}

void set_threads(int64_t threads) {
  const int n =
      threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  keep_freed_cpu_memory();
}

}  // namespace hrm
