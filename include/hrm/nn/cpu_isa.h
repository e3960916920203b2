#pragma once
// The instruction set the fused CPU kernels run on. Each kernel file is compiled once per path (x86-64: avx512 =
// x86-64-v4, AVX-512 F/BW/DQ/VL; avx2 = x86-64-v3, AVX2 + FMA; generic = the baseline; elsewhere only generic) and
// dispatched at run time, so one machine can test and time every path it can run.
#include <string>
#include <vector>

namespace hrm::nn {

enum class CpuIsa { Generic, Avx2, Avx512 };

const char* cpu_isa_name(CpuIsa isa);  // "generic", "avx2", "avx512"

// The paths this build has and this CPU can run, from generic up.
std::vector<CpuIsa> supported_cpu_isas();

// The active path: the last set_cpu_isa, else the environment's HRM_CPU_ISA=avx512|avx2|generic, else the best
// supported one. Throws hrm::Error when HRM_CPU_ISA names an unknown path or one this CPU (or build) cannot run.
CpuIsa cpu_isa();

// Switches the path (tests, benchmarks); throws hrm::Error when the CPU or the build cannot run it.
void set_cpu_isa(CpuIsa isa);

// The path named name; throws hrm::Error naming `what` (e.g. "HRM_CPU_ISA") for an unknown name.
CpuIsa parse_cpu_isa(const std::string& name, const std::string& what);

}  // namespace hrm::nn
