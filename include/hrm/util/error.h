#pragma once
// Errors raised by hrm: one exception type whose message names the file/key and the problem.
#include <stdexcept>
#include <string>

namespace hrm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws hrm::Error(message) when cond is false.
inline void check(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

}  // namespace hrm
