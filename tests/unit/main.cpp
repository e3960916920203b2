// The unit tests' entry point: float32 GEMMs on the kernels `hrm verify-reference` uses (the Reference tests compare
// float32 results with the fixtures: docs/reference-parity.md), then gtest.
#include <gtest/gtest.h>

#include "hrm/util/device.h"

int main(int argc, char** argv) {
  hrm::use_reference_blas_kernels(argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
