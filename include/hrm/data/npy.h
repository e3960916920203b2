#pragma once
// NumPy .npy files (format versions 1-3, little-endian, C order), read and written without numpy.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace hrm::npy {

struct Header {
  std::string descr;  // e.g. "<f4"
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes from the start of the file to the array data
  torch::ScalarType dtype = torch::kFloat;
  int64_t numel() const;
};

// Parses and validates a header; `what` names the source in error messages.
Header parse_header(const std::string& bytes, const std::string& what);

// Reads the header only (cheap: used to validate datasets before mapping them).
Header read_header(const std::string& path);

// Loads a whole array as a CPU tensor of the file's dtype. Throws hrm::Error naming the file on malformed input
// (bad magic, unsupported dtype or byte order, Fortran order, truncated or oversized data).
torch::Tensor load(const std::string& path);

// Saves a tensor (made contiguous, moved to CPU) atomically: temp file + rename.
void save(const std::string& path, const torch::Tensor& tensor);

}  // namespace hrm::npy
