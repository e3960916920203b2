#include "hrm/data/batch.h"

namespace hrm {

Batch Batch::to(const torch::Device& device) const {
  return Batch{inputs.to(device), labels.to(device), puzzle_identifiers.to(device), global_size, row_offset};
}

}  // namespace hrm
