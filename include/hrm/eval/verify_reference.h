#pragma once
// Replays a reference fixture (outputs of the published PyTorch implementation, see ../shared/fixtures/README.md)
// and compares every saved tensor: outputs, carry, loss, metrics, gradients, weights and optimizer moments after
// each training segment, and the evaluation segments.
#include <cstdint>
#include <iosfwd>
#include <string>

namespace hrm {

struct VerifyOptions {
  double rtol = 1e-4;
  double atol = 1e-5;
  // Updated weights whose reference gradient is below this fraction of the tensor's largest |gradient| (or zero)
  // may move either way under scale-invariant optimizers: those that differ are counted and reported, not failed.
  double tiny_grad_ratio = 1e-6;
  bool free_running = true;  // also replay all segments from our own state and report the drift
};

struct VerifyResult {
  bool ok = true;
  int64_t groups = 0;
  int64_t failed_groups = 0;
  int64_t skipped_elements = 0;   // updated weights that differ but fall under the tiny-gradient rule
  std::string unsupported_model;  // set (and nothing compared) when the fixture's model is not in this build
};

// Prints one line per compared tensor group to `log`. Throws hrm::Error when the fixture is unreadable. The model
// is manifest.model (absent: hrm).
VerifyResult verify_reference(const std::string& fixture_dir, const VerifyOptions& options, std::ostream& log);

}  // namespace hrm
