#pragma once
// Small string helpers shared by the config parsers and error messages.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hrm {

// "key=value" (a command-line override); errors name `source` and the text.
struct Assignment {
  std::string key, value;
};
Assignment split_assignment(const std::string& text, const std::string& source);

// "1,2,4" -> {1, 2, 4}; errors name `what` and the bad item.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);

// `d` as an int64 when it is a whole number inside int64's range; nullopt for fractions, NaN, infinities and
// anything a conversion would overflow (that conversion is undefined behaviour).
std::optional<int64_t> exact_int64(double d);

// Closest string by edit distance (for "did you mean" messages); empty when `candidates` is empty.
std::string closest_match(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace hrm
