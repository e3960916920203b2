#include "hrm/util/device.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
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
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || cpu_bf16_products_beat_float32() || float32_products_on_openmp)
    return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on as started
}

namespace {
// The first "vendor_id", "cpu family", "model", "model name" and "flags" lines of /proc/cpuinfo.
struct CpuInfo {
  std::string vendor, family, model_number, model, flags;
};
const CpuInfo& cpuinfo() {
  static const CpuInfo info = [] {
    CpuInfo c;
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line) && (c.vendor.empty() || c.model.empty() || c.flags.empty())) {
      const auto colon = line.find(':');
      if (colon == std::string::npos || colon == 0) continue;
      const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
      const std::string value = line.substr(std::min(line.size(), colon + 2));
      if (key == "vendor_id" && c.vendor.empty()) c.vendor = value;
      if (key == "cpu family" && c.family.empty()) c.family = value;
      if (key == "model" && c.model_number.empty()) c.model_number = value;
      if (key == "model name" && c.model.empty()) c.model = value;
      if (key == "flags" && c.flags.empty()) c.flags = value;
    }
    return c;
  }();
  return info;
}
// Whether a space-separated flag list holds a flag as a whole word.
bool has(const std::string& flags, const char* flag) {
  return (" " + flags + " ").find(std::string(" ") + flag + " ") != std::string::npos;
}

// The oneDNN cap of ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), upper-cased; empty when neither is set.
std::string onednn_cap() {
  for (const char* var : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"}) {
    const char* cap = std::getenv(var);
    if (cap == nullptr) continue;
    std::string name(cap);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
    return name;
  }
  return "";
}

CpuFacts this_cpu() {
  const char* isa = std::getenv("HRM_CPU_ISA");
  return {cpuinfo().vendor, cpuinfo().flags, isa == nullptr ? "" : isa, onednn_cap()};
}

bool has(const CpuFacts& cpu, const char* flag) { return has(cpu.flags, flag); }
bool cap_allows(const CpuFacts& cpu, const char* isa) {
  const std::string& cap = cpu.onednn_cap;
  return cap.empty() || cap == "ALL" || cap == "DEFAULT" || cap.find(isa) != std::string::npos;
}
}  // namespace

bool has_native_bf16(const CpuFacts& cpu) {
  // A forced avx2 or generic kernel path stands for a CPU without AVX-512, so without native bf16 too.
  if (!cpu.hrm_cpu_isa.empty() && cpu.hrm_cpu_isa != "avx512") return false;
  // So does oneDNN capped below its bf16 kernels (LibTorch's bf16 products run there).
  if (!(cap_allows(cpu, "BF16") || cap_allows(cpu, "FP16") || cap_allows(cpu, "AMX") || cap_allows(cpu, "AVX10")))
    return false;
  return has(cpu, "avx512_bf16") || has(cpu, "amx_bf16");
}

bool bf16_products_beat_float32(const CpuFacts& cpu) {
  if (!has_native_bf16(cpu)) return false;
  if (has(cpu, "amx_bf16") && cap_allows(cpu, "AMX")) return true;
  return has(cpu, "avx512_bf16") && cpu.vendor == "AuthenticAMD";
}

bool bf16_products_on_dot_kernels(const CpuFacts& cpu) {
  // without AMX tiles, bf16 beats float32 only on AVX512-BF16 (bf16_products_beat_float32)
  return bf16_products_beat_float32(cpu) && !(has(cpu, "amx_bf16") && cap_allows(cpu, "AMX"));
}

bool cpu_bf16_products_on_dot_kernels() {
  static const bool on = bf16_products_on_dot_kernels(this_cpu());
  return on;
}

bool cpu_has_native_bf16() {
  static const bool native = has_native_bf16(this_cpu());
  return native;
}

bool cpu_bf16_products_beat_float32() {
  static const bool faster = bf16_products_beat_float32(this_cpu());
  return faster;
}

namespace {
// One of OpenBLAS's `char* f(void)` queries, looked up at run time (empty when the BLAS is not OpenBLAS).
std::string openblas_query(const char* symbol) {
  const auto f = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, symbol));
  return f ? std::string(f()) : std::string();
}

// Sets OPENBLAS_CORETYPE=core and re-executes the program, unless core is null or the user chose a core (OpenBLAS
// reads the variable once, as it loads).
void reexec_with_blas_core(char** argv, const char* core) {
  if (core == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  ::setenv("OPENBLAS_CORETYPE", core, 1);
  ::execv("/proc/self/exe", argv);
  ::unsetenv("OPENBLAS_CORETYPE");
}
}  // namespace

void use_reference_blas_kernels(char** argv) {
  const std::string name = openblas_query("openblas_get_corename");
  const bool haswell_kernels = name == "Haswell" || name == "Zen";  // Zen runs Haswell's
  const bool can_run_them = has(cpuinfo().flags, "avx2") && has(cpuinfo().flags, "fma");
  reexec_with_blas_core(argv, !name.empty() && !haswell_kernels && can_run_them ? "Haswell" : nullptr);
}

const char* blas_core_fitting(const std::string& openblas_core, const CpuFacts& cpu) {
  for (const char* fine : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    if (openblas_core == fine) return nullptr;
  if (has(cpu, "avx512f") && has(cpu, "avx512bw") && has(cpu, "avx512vl") && has(cpu, "avx512dq")) return "SkylakeX";
  return has(cpu, "avx2") && has(cpu, "fma") ? "Haswell" : nullptr;
}

void use_blas_kernels_fitting_the_cpu(char** argv) {
  const std::string name = openblas_query("openblas_get_corename");
  reexec_with_blas_core(argv, name.empty() ? nullptr : blas_core_fitting(name, this_cpu()));
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
  const std::string& model = cpuinfo().model;
  std::string simd;
  for (const char* f : {"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16"})
    if (has(cpuinfo().flags, f)) simd += (simd.empty() ? "" : " ") + std::string(f);
  // Family and model tell CPUs of one name apart (AMD EPYC: family 25 model 1 has no AVX-512, model 17 has).
  const std::string family =
      cpuinfo().family.empty() ? "" : " (family " + cpuinfo().family + " model " + cpuinfo().model_number + ")";
  return (model.empty() ? std::string("unknown CPU") : model) + family + ", " +
         std::to_string(std::thread::hardware_concurrency()) + " cores" + (simd.empty() ? "" : ", " + simd);
}

}  // namespace hrm
