#pragma once
// Whole-file reads and crash-safe writes.
#include <string>
#include <utility>
#include <vector>

namespace hrm {

// Writes `bytes` to `path` atomically: a temporary file in the same folder (PATH.tmp.PID.N), fsync'ed, then renamed
// over `path`.
void write_file_atomic(const std::string& path, const std::string& bytes);
void write_file_atomic(const std::string& path, const char* data, size_t size);
// The same for a file made of several pieces (no concatenated copy).
void write_file_atomic(const std::string& path, const std::vector<std::pair<const char*, size_t>>& pieces);

// Whether `file_name` is the temporary file of an atomic write that did not finish (its writer was killed before the
// rename) of a file whose name ends with `final_suffix` (".pt": a checkpoint).
bool is_unfinished_write(const std::string& file_name, const std::string& final_suffix);

// Reads a whole file; throws hrm::Error naming the file when it cannot be read.
std::string read_file(const std::string& path);

// Creates the folder that will hold `path` (nothing when it has none).
void ensure_parent_dir(const std::string& path);

}  // namespace hrm
