#include "hrm/util/device.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
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
  // OpenBLAS (Debian's libopenblas0-pthread: LibTorch's float32 BLAS there) runs a thread pool of its own that
  // torch::set_num_threads does not size: with --threads 1 a second thread still ran every GEMM and spun in
  // sched_yield between them. Looked up at run time: other BLAS builds do not have it.
  using SetBlasThreads = void (*)(int);
  if (auto set_blas = reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(n);
  keep_freed_cpu_memory();
}

void use_passive_openmp_workers_for_float32(char** argv, bool float32_products_on_openmp) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || cpu_has_native_bf16() || float32_products_on_openmp) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on as started
}

namespace {
// The first "model name" and "flags" lines of /proc/cpuinfo (flags padded with spaces for whole-word search).
std::pair<std::string, std::string> cpuinfo() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model, flags;
  while (std::getline(in, line) && (model.empty() || flags.empty())) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "model name" && model.empty()) model = line.substr(std::min(line.size(), colon + 2));
    if (key == "flags" && flags.empty()) flags = " " + line.substr(colon + 1) + " ";
  }
  return {model, flags};
}
}  // namespace

bool cpu_has_native_bf16() {
  static const bool native = [] {
    // A forced avx2 or generic kernel path stands for a CPU without AVX-512, so without native bf16 too.
    const char* isa = std::getenv("HRM_CPU_ISA");
    if (isa != nullptr && *isa != '\0' && std::string(isa) != "avx512") return false;
    // So does oneDNN capped below its bf16 kernels (LibTorch's bf16 products run there).
    for (const char* var : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}) {
      const char* cap = std::getenv(var);
      if (cap == nullptr) continue;
      std::string name(cap);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
      const bool bf16_kernels = name == "ALL" || name == "DEFAULT" || name.find("BF16") != std::string::npos ||
                                name.find("FP16") != std::string::npos || name.find("AMX") != std::string::npos ||
                                name.find("AVX10") != std::string::npos;
      if (!bf16_kernels) return false;
    }
    const std::string flags = cpuinfo().second;
    return flags.find(" avx512_bf16 ") != std::string::npos || flags.find(" amx_bf16 ") != std::string::npos;
  }();
  return native;
}

namespace {
// One of OpenBLAS's `char* f(void)` queries, looked up at run time (empty when the BLAS is not OpenBLAS).
std::string openblas_query(const char* symbol) {
  const auto f = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, symbol));
  return f ? std::string(f()) : std::string();
}
}  // namespace

void use_reference_blas_kernels(char** argv) {
  const std::string name = openblas_query("openblas_get_corename");
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || name.empty()) return;
  const std::string flags = cpuinfo().second;
  if (flags.find(" avx2 ") == std::string::npos || flags.find(" fma ") == std::string::npos) return;
  if (name == "Haswell" || name == "Zen") return;  // Zen runs Haswell's kernels
  ::setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OPENBLAS_CORETYPE");
}

std::string blas_description() {
  const std::string core = openblas_query("openblas_get_corename");
  if (core.empty()) return "not OpenBLAS";
  // The release matters to parity: kernels of the same name round differently across releases
  // (docs/reference-parity.md). The configuration string reads "OpenBLAS 0.3.21 DYNAMIC_ARCH ...".
  const std::string config = openblas_query("openblas_get_config"), prefix = "OpenBLAS ";
  const std::string version = config.rfind(prefix, 0) == 0
                                  ? config.substr(prefix.size(), config.find(' ', prefix.size()) - prefix.size()) + " "
                                  : "";
  return prefix + version + core + " kernels";
}

std::string cpu_description() {
  const auto [model, flags] = cpuinfo();
  std::string simd;
  for (const char* f : {"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16"})
    if (flags.find(std::string(" ") + f + " ") != std::string::npos) simd += (simd.empty() ? "" : " ") + std::string(f);
  return (model.empty() ? std::string("unknown CPU") : model) + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " cores" + (simd.empty() ? "" : ", " + simd);
}

}  // namespace hrm
