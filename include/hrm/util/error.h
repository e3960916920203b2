#pragma once
// Errors raised by hrm: one exception type whose message names the file/key and the problem.
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hrm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws hrm::Error(message) when cond is false.
inline void check(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync'ed, then renamed over `path`.
void write_file_atomic(const std::string& path, const std::string& bytes);
void write_file_atomic(const std::string& path, const char* data, size_t size);
// The same for a file made of several pieces (no concatenated copy).
void write_file_atomic(const std::string& path, const std::vector<std::pair<const char*, size_t>>& pieces);

// Reads a whole file; throws hrm::Error naming the file when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace hrm
