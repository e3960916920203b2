#include "hrm/util/device.h"

#include <dlfcn.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <thread>
#include <vector>

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
// The CPU's vendor, family, model number, model name and the flags hrm's rules use.
struct CpuInfo {
  std::string vendor, family, model_number, model, flags;
};

#if defined(__x86_64__) || defined(__i386__)
// Read with CPUID and XGETBV, the source the kernels' dispatch (__builtin_cpu_supports), oneDNN and OpenBLAS use:
// /proc/cpuinfo is the kernel's copy of it, and under user-mode emulation (qemu-x86_64 -cpu EPYC-Milan, the test of
// a CPU without AVX-512) it describes the host instead. A flag counts only where the OS saves its registers (XCR0), as
// Linux lists it; names are Linux's.
CpuInfo read_cpu() {
  CpuInfo c;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) == 0) return c;
  const unsigned max_leaf = eax;
  char vendor[12];
  std::memcpy(vendor, &ebx, 4), std::memcpy(vendor + 4, &edx, 4), std::memcpy(vendor + 8, &ecx, 4);
  c.vendor.assign(vendor, 12);

  __get_cpuid(1, &eax, &ebx, &ecx, &edx);
  const unsigned base_family = (eax >> 8) & 0xf, base_model = (eax >> 4) & 0xf;
  const unsigned family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
  const unsigned model =
      base_family == 0x6 || base_family == 0xf ? (((eax >> 16) & 0xf) << 4) + base_model : base_model;
  c.family = std::to_string(family);
  c.model_number = std::to_string(model);
  const auto bit = [](unsigned reg, int b) { return ((reg >> b) & 1) != 0; };
  const bool fma = bit(ecx, 12), movbe = bit(ecx, 22), osxsave = bit(ecx, 27), avx = bit(ecx, 28);
  std::uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (std::uint64_t(hi) << 32) | lo;
  }
  const bool ymm = avx && (xcr0 & 0x6) == 0x6;               // SSE and AVX state
  const bool zmm = ymm && (xcr0 & 0xe0) == 0xe0;             // opmask and both halves of the ZMM registers
  const bool tiles = (xcr0 & (3ull << 17)) == (3ull << 17);  // AMX tile configuration and data
  std::vector<const char*> flags;
  if (ymm && fma) flags.push_back("fma");
  if (movbe) flags.push_back("movbe");
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    const unsigned subleaves = eax;
    if (ymm && bit(ebx, 5)) flags.push_back("avx2");
    if (bit(ebx, 8)) flags.push_back("bmi2");
    if (zmm) {
      for (auto [b, name] :
           {std::pair<int, const char*>{16, "avx512f"}, {17, "avx512dq"}, {30, "avx512bw"}, {31, "avx512vl"}})
        if (bit(ebx, b)) flags.push_back(name);
    }
    if (tiles && bit(edx, 22)) flags.push_back("amx_bf16");
    if (zmm && subleaves >= 1) {
      __cpuid_count(7, 1, eax, ebx, ecx, edx);
      if (bit(eax, 5)) flags.push_back("avx512_bf16");
    }
  }
  for (const char* f : flags) c.flags += (c.flags.empty() ? "" : " ") + std::string(f);

  __get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx);
  if (eax >= 0x80000004) {
    char brand[48];
    for (unsigned i = 0; i < 3; ++i) {
      unsigned regs[4];
      __get_cpuid(0x80000002 + i, &regs[0], &regs[1], &regs[2], &regs[3]);
      std::memcpy(brand + 16 * i, regs, 16);
    }
    const std::string name(brand, strnlen(brand, sizeof brand));  // padded with spaces on some CPUs
    const auto first = name.find_first_not_of(' '), last = name.find_last_not_of(' ');
    if (first != std::string::npos) c.model = name.substr(first, last - first + 1);
  }
  return c;
}
#else
CpuInfo read_cpu() {
  CpuInfo c;  // no x86 flags; the model name as /proc/cpuinfo has one
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line) && c.model.empty())
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      c.model = line.substr(std::min(line.size(), line.find(':') + 2));
  return c;
}
#endif

const CpuInfo& cpuinfo() {
  static const CpuInfo info = read_cpu();
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

std::string cpu_flags() { return cpuinfo().flags; }
bool cpu_has_flag(const char* flag) { return has(cpuinfo().flags, flag); }

int64_t cpu_l2_cache_bytes() {
  static const int64_t bytes = std::max<long>(0, sysconf(_SC_LEVEL2_CACHE_SIZE));
  return bytes;
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
