#pragma once
// NumPy .npy files (format versions 1-3, little-endian, C order), read and written without numpy.
#include <cstdint>
#include <cstdio>
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

// Writes a 2-D array [rows, cols] row by row, holding no more than a write buffer: the data goes out as it comes,
// the header (a 128-byte space fits any row count) at close(). Errors (a full disk included) name the file; a writer
// destroyed without close() removes its file.
class RowWriter {
 public:
  RowWriter(std::string path, torch::ScalarType dtype, int64_t cols);
  ~RowWriter();
  RowWriter(const RowWriter&) = delete;
  RowWriter& operator=(const RowWriter&) = delete;
  void append(const void* rows, int64_t n_rows);  // n_rows * cols elements
  void close();
  int64_t rows() const { return rows_; }

 private:
  std::string path_;
  torch::ScalarType dtype_;
  int64_t cols_, rows_ = 0;
  std::FILE* file_ = nullptr;
};

}  // namespace hrm::npy
