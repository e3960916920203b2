#include "hrm/data/npy.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

struct DtypeInfo {
  const char* code;  // without byte-order character
  torch::ScalarType type;
};
constexpr DtypeInfo kDtypes[] = {
    {"f4", torch::kFloat}, {"f8", torch::kDouble}, {"f2", torch::kHalf}, {"i1", torch::kChar}, {"i2", torch::kShort},
    {"i4", torch::kInt},   {"i8", torch::kLong},   {"u1", torch::kByte}, {"b1", torch::kBool},
};

// A tiny parser for the Python dict literal of a .npy header.
class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& what) : s_(s), what_(what) {}

  std::map<std::string, std::string> parse() {
    std::map<std::string, std::string> out;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = parse_string();
      expect(':');
      skip_ws();
      std::string value;
      if (peek() == '\'' || peek() == '"')
        value = "s:" + parse_string();
      else if (peek() == '(')
        value = "t:" + parse_tuple();
      else
        value = "w:" + parse_word();
      if (!out.emplace(key, value).second) fail("duplicate key '" + key + "'");
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      expect('}');
      break;
    }
    return out;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw Error(what_ + ": malformed .npy header (" + why + "): " + s_);
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string parse_string() {
    skip_ws();
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a string");
    ++i_;
    const size_t end = s_.find(q, i_);
    if (end == std::string::npos) fail("unterminated string");
    std::string r = s_.substr(i_, end - i_);
    i_ = end + 1;
    return r;
  }
  std::string parse_tuple() {
    expect('(');
    const size_t end = s_.find(')', i_);
    if (end == std::string::npos) fail("unterminated tuple");
    std::string r = s_.substr(i_, end - i_);
    i_ = end + 1;
    return r;
  }
  std::string parse_word() {
    size_t start = i_;
    while (i_ < s_.size() && std::isalnum(static_cast<unsigned char>(s_[i_]))) ++i_;
    if (start == i_) fail("expected a value");
    return s_.substr(start, i_ - start);
  }

  const std::string& s_;
  const std::string& what_;
  size_t i_ = 0;
};

std::vector<int64_t> parse_shape(const std::string& tuple, const HeaderParser& p) {
  std::vector<int64_t> shape;
  size_t i = 0;
  while (i < tuple.size()) {
    while (i < tuple.size() && (std::isspace(static_cast<unsigned char>(tuple[i])) || tuple[i] == ',')) ++i;
    if (i >= tuple.size()) break;
    if (!std::isdigit(static_cast<unsigned char>(tuple[i]))) p.fail("shape entries must be non-negative integers");
    int64_t v = 0;
    while (i < tuple.size() && std::isdigit(static_cast<unsigned char>(tuple[i]))) {
      v = v * 10 + (tuple[i] - '0');
      if (v > (int64_t(1) << 48)) p.fail("shape entry too large");
      ++i;
    }
    if (i < tuple.size() && !std::isspace(static_cast<unsigned char>(tuple[i])) && tuple[i] != ',')
      p.fail("bad shape entry");
    shape.push_back(v);
  }
  return shape;
}

std::string descr_for(torch::ScalarType t) {
  for (const auto& d : kDtypes) {
    if (d.type == t)
      return (d.code[0] == 'u' || d.code[0] == 'b' || std::strcmp(d.code, "i1") == 0 ? "|" : "<") + std::string(d.code);
  }
  throw Error(std::string("npy: cannot save tensors of dtype ") + c10::toString(t));
}

}  // namespace

int64_t Header::numel() const {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

Header parse_header(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0)
    throw Error(what + ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(what + ": truncated .npy header");
    header_len = 0;
    for (int k = 3; k >= 0; --k) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + k]);
    prefix = 12;
  } else {
    throw Error(what + ": unsupported .npy format version " + std::to_string(major));
  }
  if (bytes.size() < prefix + header_len) throw Error(what + ": truncated .npy header");
  const std::string text = bytes.substr(prefix, header_len);
  HeaderParser parser(text, what);
  const auto dict = parser.parse();
  for (const auto& kv : dict) {
    if (kv.first != "descr" && kv.first != "fortran_order" && kv.first != "shape")
      parser.fail("unknown key '" + kv.first + "'");
  }
  auto get = [&](const char* key, char kind) {
    auto it = dict.find(key);
    if (it == dict.end()) parser.fail(std::string("missing key '") + key + "'");
    if (it->second[0] != kind) parser.fail(std::string("bad value type for '") + key + "'");
    return it->second.substr(2);
  };
  Header h;
  h.descr = get("descr", 's');
  const std::string fo = get("fortran_order", 'w');
  if (fo != "True" && fo != "False") parser.fail("fortran_order must be True or False");
  h.fortran_order = fo == "True";
  if (h.fortran_order) throw Error(what + ": Fortran-ordered arrays are not supported (save with C order)");
  h.shape = parse_shape(get("shape", 't'), parser);
  // A header may claim any shape: refuse products that no file holds (and that would overflow) before sizes are used.
  int64_t elements = 1;
  for (const int64_t d : h.shape) {
    if (d != 0 && elements > (int64_t(1) << 56) / d) parser.fail("the shape has more than 2^56 elements");
    elements *= d;
  }
  h.data_offset = prefix + header_len;

  if (h.descr.size() < 3) parser.fail("bad descr '" + h.descr + "'");
  const char order = h.descr[0];
  const std::string code = h.descr.substr(1);
  if (order == '>') throw Error(what + ": big-endian arrays are not supported (descr " + h.descr + ")");
  if (order != '<' && order != '|' && order != '=') parser.fail("bad byte order in descr '" + h.descr + "'");
  bool found = false;
  for (const auto& d : kDtypes) {
    if (code == d.code) {
      h.dtype = d.type;
      found = true;
    }
  }
  if (!found) throw Error(what + ": unsupported dtype '" + h.descr + "'");
  return h;
}

Header read_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::string head(12, '\0');
  in.read(head.data(), 12);
  head.resize(static_cast<size_t>(in.gcount()));
  if (head.size() < 10 || std::memcmp(head.data(), kMagic, 6) != 0) throw Error(path + ": not a .npy file (bad magic)");
  const int major = static_cast<unsigned char>(head[6]);
  size_t len = major == 1 ? (static_cast<unsigned char>(head[8]) | (static_cast<unsigned char>(head[9]) << 8)) + 10 : 0;
  if (major != 1) {
    if (head.size() < 12) throw Error(path + ": truncated .npy header");
    for (int k = 3; k >= 0; --k) len = (len << 8) | static_cast<unsigned char>(head[8 + k]);
    len += 12;
  }
  if (len > (1u << 24)) throw Error(path + ": .npy header too large");
  std::string all(len, '\0');
  in.seekg(0);
  in.read(all.data(), static_cast<std::streamsize>(len));
  all.resize(static_cast<size_t>(in.gcount()));
  return parse_header(all, path);
}

torch::Tensor load(const std::string& path) {
  const std::string bytes = read_file(path);
  const Header h = parse_header(bytes, path);
  const size_t item = c10::elementSize(h.dtype);
  const size_t expected = static_cast<size_t>(h.numel()) * item;
  const size_t have = bytes.size() - h.data_offset;
  if (have < expected)
    throw Error(path + ": truncated .npy data (" + std::to_string(have) + " bytes, shape needs " +
                std::to_string(expected) + ")");
  if (have > expected)
    throw Error(path + ": .npy data longer than its shape (" + std::to_string(have) + " bytes, shape needs " +
                std::to_string(expected) + ")");
  torch::Tensor t = torch::empty(h.shape, torch::TensorOptions().dtype(h.dtype));
  if (expected) std::memcpy(t.data_ptr(), bytes.data() + h.data_offset, expected);
  if (h.dtype == torch::kBool) {
    // numpy bools are bytes 0/1; anything else would be a silent wrong value.
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + h.data_offset);
    for (size_t i = 0; i < expected; ++i)
      if (p[i] > 1) throw Error(path + ": invalid bool value in .npy data");
  }
  return t;
}

namespace {
// The header of an array; padded so that the data starts at a multiple of 64 bytes (as numpy does), and at least at
// `min_size`.
std::string header_bytes(torch::ScalarType dtype, const std::vector<int64_t>& shape, size_t min_size = 0) {
  std::string dict = "{'descr': '" + descr_for(dtype) + "', 'fortran_order': False, 'shape': (";
  const size_t dim = shape.size();
  for (size_t i = 0; i < dim; ++i) {
    dict += std::to_string(shape[i]);
    if (dim == 1 || i + 1 < dim) dict += ",";
    if (i + 1 < dim) dict += " ";
  }
  dict += "), }";
  size_t total = 10 + dict.size() + 1;
  total += (64 - total % 64) % 64;
  while (total < min_size) total += 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict += '\n';
  std::string out(kMagic, 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>((dict.size() >> 8) & 0xff);
  return out + dict;
}
}  // namespace

void save(const std::string& path, const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
  const std::string header = header_bytes(t.scalar_type(), t.sizes().vec());
  write_file_atomic(path,
                    {{header.data(), header.size()},
                     {static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size()}});
}

constexpr size_t kRowWriterHeader = 128;

RowWriter::RowWriter(std::string path, torch::ScalarType dtype, int64_t cols)
    : path_(std::move(path)), dtype_(dtype), cols_(cols) {
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) throw Error("cannot create " + path_ + ": " + std::strerror(errno));
  if (std::fseek(file_, static_cast<long>(kRowWriterHeader), SEEK_SET) != 0) {
    std::fclose(file_);
    file_ = nullptr;
    throw Error("cannot write " + path_ + ": " + std::strerror(errno));
  }
}

RowWriter::~RowWriter() {
  if (file_) {
    std::fclose(file_);
    std::remove(path_.c_str());
  }
}

void RowWriter::append(const void* rows, int64_t n_rows) {
  check(file_ != nullptr, path_ + ": append after close");
  const size_t bytes = static_cast<size_t>(n_rows * cols_) * c10::elementSize(dtype_);
  if (std::fwrite(rows, 1, bytes, file_) != bytes) throw Error("cannot write " + path_ + ": " + std::strerror(errno));
  rows_ += n_rows;
}

void RowWriter::close() {
  check(file_ != nullptr, path_ + ": closed twice");
  const std::string header = header_bytes(dtype_, {rows_, cols_}, kRowWriterHeader);
  check(header.size() == kRowWriterHeader, path_ + ": npy header of " + std::to_string(header.size()) + " bytes");
  const bool ok = std::fflush(file_) == 0 && std::fseek(file_, 0, SEEK_SET) == 0 &&
                  std::fwrite(header.data(), 1, header.size(), file_) == header.size() && std::fflush(file_) == 0 &&
                  ::fsync(::fileno(file_)) == 0;
  const std::string why = std::strerror(errno);
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!ok || !closed) {
    std::remove(path_.c_str());
    throw Error("cannot write " + path_ + ": " + why);
  }
}

}  // namespace hrm::npy
