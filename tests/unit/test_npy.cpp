#include <filesystem>
#include <fstream>

#include "test_util.h"

using hrm::test::TempDir;

namespace {
void write_raw(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }
std::string header_v1(const std::string& dict) {
  std::string d = dict;
  size_t total = 10 + d.size() + 1;
  d.append((64 - total % 64) % 64, ' ');
  d += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(d.size() & 0xff);
  out += static_cast<char>(d.size() >> 8);
  return out + d;
}
void expect_error(const std::string& path, const std::string& needle) {
  try {
    hrm::npy::load(path);
    FAIL() << "expected an error for " << path;
  } catch (const hrm::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
}
}  // namespace

TEST(Npy, RoundTripsDtypesAndShapes) {
  TempDir dir;
  const std::vector<torch::Tensor> tensors = {torch::randn({3, 4, 5}),
                                              torch::randn({7}, torch::kDouble),
                                              torch::randint(-5, 5, {2, 3}, torch::kInt),
                                              torch::randint(0, 1000, {4}, torch::kLong),
                                              torch::randint(0, 255, {3, 3}, torch::kByte),
                                              torch::rand({5}) > 0.5,
                                              torch::tensor(3.5),
                                              torch::zeros({0, 4})};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string path = dir.file("t" + std::to_string(i) + ".npy");
    hrm::npy::save(path, tensors[i]);
    const torch::Tensor back = hrm::npy::load(path);
    EXPECT_EQ(back.scalar_type(), tensors[i].scalar_type());
    EXPECT_EQ(back.sizes(), tensors[i].sizes());
    EXPECT_TRUE(torch::equal(back, tensors[i])) << i;
    EXPECT_EQ(std::filesystem::file_size(path) % 64, (tensors[i].numel() * tensors[i].element_size()) % 64);
  }
  // Saving leaves no temporary files behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.str())) files += e.path().extension() == ".npy";
  EXPECT_EQ(files, tensors.size());
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), static_cast<long>(tensors.size()));
}

TEST(Npy, SavesNonContiguousTensorsInLogicalOrder) {
  TempDir dir;
  const torch::Tensor t = torch::arange(12, torch::kFloat).view({3, 4}).t();
  hrm::npy::save(dir.file("t.npy"), t);
  EXPECT_TRUE(torch::equal(hrm::npy::load(dir.file("t.npy")), t));
}

TEST(Npy, ReadsFilesWrittenByNumpy) {
  HRM_REQUIRE_FIXTURE();
  const auto h = hrm::npy::read_header(hrm::test::fixture_dir() + "/steps/0/logits.npy");
  EXPECT_EQ(h.descr, "<f4");
  EXPECT_EQ(h.shape, (std::vector<int64_t>{6, 16, 7}));
  const torch::Tensor halted = hrm::npy::load(hrm::test::fixture_dir() + "/steps/0/halted.npy");
  EXPECT_EQ(halted.scalar_type(), torch::kBool);
  const torch::Tensor loss = hrm::npy::load(hrm::test::fixture_dir() + "/steps/0/loss.npy");
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_EQ(loss.scalar_type(), torch::kDouble);
}

TEST(Npy, RejectsMalformedFiles) {
  TempDir dir;
  const std::string data(24, '\0');
  write_raw(dir.file("magic.npy"), "NOTNUMPY" + data);
  expect_error(dir.file("magic.npy"), "bad magic");
  write_raw(dir.file("trunc.npy"), header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }") + data);
  expect_error(dir.file("trunc.npy"), "truncated");
  write_raw(dir.file("long.npy"), header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }") + data);
  expect_error(dir.file("long.npy"), "longer than its shape");
  write_raw(dir.file("fortran.npy"), header_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }") + data);
  expect_error(dir.file("fortran.npy"), "Fortran");
  write_raw(dir.file("big.npy"), header_v1("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }") + data);
  expect_error(dir.file("big.npy"), "big-endian");
  write_raw(dir.file("cplx.npy"), header_v1("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }") + data);
  expect_error(dir.file("cplx.npy"), "unsupported dtype");
  write_raw(dir.file("dict.npy"), header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (6,") + data);
  expect_error(dir.file("dict.npy"), "malformed");
  write_raw(dir.file("key.npy"), header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}") + data);
  expect_error(dir.file("key.npy"), "unknown key");
  write_raw(dir.file("neg.npy"), header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }") + data);
  expect_error(dir.file("neg.npy"), "malformed");
  write_raw(dir.file("bool.npy"), header_v1("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }") + "\x01\x07");
  expect_error(dir.file("bool.npy"), "invalid bool");
  expect_error(dir.file("missing.npy"), "cannot open");
  // A header claiming an absurd size (each entry below the per-entry limit, their product overflowing int64).
  write_raw(
      dir.file("huge.npy"),
      header_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (281474976710656, 281474976710656, 4), }") + data);
  expect_error(dir.file("huge.npy"), "more than 2^56 elements");
}

TEST(Npy, FailedSaveLeavesNothing) {
  TempDir dir;
  EXPECT_THROW(hrm::npy::save(dir.file("no/such/dir/t.npy"), torch::ones({2})), hrm::Error);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), 0);
}

TEST(Npy, RowWriterStreamsRowsAndWritesTheHeaderLast) {
  TempDir dir;
  const std::string path = dir.file("rows.npy");
  torch::Tensor expected = torch::randint(0, 255, {37, 900}, torch::kByte);
  {
    hrm::npy::RowWriter w(path, torch::kByte, 900);
    w.append(expected.data_ptr(), 30);
    for (int64_t r = 30; r < 37; ++r) w.append(expected[r].data_ptr(), 1);
    EXPECT_EQ(w.rows(), 37);
    w.close();
  }
  const torch::Tensor back = hrm::npy::load(path);
  EXPECT_EQ(back.sizes(), expected.sizes());
  EXPECT_TRUE(torch::equal(back, expected));
  EXPECT_EQ(hrm::npy::read_header(path).data_offset, 128u);
  // Dropped without close(): nothing is left behind.
  { hrm::npy::RowWriter w(dir.file("dropped.npy"), torch::kInt, 3); }
  EXPECT_FALSE(std::filesystem::exists(dir.file("dropped.npy")));
}
