// The unit tests' entry point: float32 GEMMs on the kernels `hrm verify-reference` uses (the Reference tests compare
// float32 results with the fixtures: docs/reference-parity.md), then gtest; SIGINT/SIGTERM
// go to a waiting thread, as in the CLI; HRM_CPU_ISA applies to oneDNN and LibTorch before any test runs.
#include <gtest/gtest.h>

#include <cstdio>

#include "hrm/nn/fused.h"
#include "hrm/util/device.h"
#include "hrm/util/signals.h"

int main(int argc, char** argv) {
  hrm::deliver_stop_signals_on_a_waiting_thread();  // as the CLI does
  hrm::use_reference_blas_kernels(argv);
  try {
    hrm::nn::apply_cpu_isa_environment();  // HRM_CPU_ISA=avx2 runs every test as on a CPU without AVX-512
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
