#pragma once
// Small summaries of measurements.
#include <algorithm>
#include <vector>

namespace hrm {

// The median of the values (the upper one of an even count; T{} when there are none): bench steps, eval batches.
template <typename T>
T median(std::vector<T> values) {
  if (values.empty()) return T{};
  const auto mid = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), mid, values.end());
  return *mid;
}

}  // namespace hrm
