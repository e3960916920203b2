#include <filesystem>
#include <fstream>
#include <optional>

#include "test_util.h"

using namespace hrm;
using hrm::test::TempDir;

TEST(Checkpoint, RoundTripGivesTheSameModel) {
  TempDir dir;
  ModelConfig c = hrm::test::tiny_config();
  c.pos_encodings = "learned";
  torch::manual_seed(0);
  ACTModel model = make_model(c);
  {
    torch::NoGradGuard ng;
    model->inner->puzzle_emb->weights.normal_();
  }
  save_checkpoint(dir.file("ck.pt"), model, {{"step", torch::tensor(42)}});
  const LoadedCheckpoint ck = read_checkpoint(dir.file("ck.pt"));
  EXPECT_EQ(ck.config.to_json(), c.to_json());
  EXPECT_EQ(ck.extra.at("step").item<int64_t>(), 42);
  ACTModel loaded = load_model(dir.file("ck.pt"));
  const StateDict a = model_state(model), b = model_state(loaded);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, t] : a) EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.str()), {}), 1);  // no temp files left
}

TEST(Checkpoint, CorruptOrForeignFilesGiveClearErrors) {
  TempDir dir;
  ACTModel model = make_model(hrm::test::tiny_config());
  save_checkpoint(dir.file("ck.pt"), model);
  const std::string bytes = read_file(dir.file("ck.pt"));
  std::ofstream(dir.file("trunc.pt"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  std::ofstream(dir.file("junk.pt"), std::ios::binary) << "this is not a checkpoint";
  for (const char* name : {"trunc.pt", "junk.pt", "missing.pt"}) {
    try {
      load_model(dir.file(name));
      FAIL() << name;
    } catch (const hrm::Error& e) {
      EXPECT_NE(std::string(e.what()).find(dir.file(name)), std::string::npos) << e.what();
    }
  }
}

// LibTorch's reader does not check the archive's CRC-32s: without hrm's check a flipped byte in a tensor loads as a
// silently different weight.
TEST(Checkpoint, AFlippedByteInATensorIsCaughtByItsCrc) {
  TempDir dir;
  torch::manual_seed(0);
  ACTModel model = make_model(hrm::test::tiny_config());
  save_checkpoint(dir.file("ck.pt"), model);
  const std::string bytes = read_file(dir.file("ck.pt"));
  ASSERT_NO_THROW(check_zip_archive(bytes, "ck.pt"));
  for (const size_t at : {bytes.size() / 3, bytes.size() / 2}) {
    std::string flipped = bytes;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    std::ofstream(dir.file("flipped.pt"), std::ios::binary | std::ios::trunc) << flipped;
    const std::string e = hrm::test::error_of([&] { read_checkpoint(dir.file("flipped.pt")); });
    EXPECT_NE(e.find("corrupt (CRC-32"), std::string::npos) << at << ": " << e;
    EXPECT_NE(e.find(dir.file("flipped.pt")), std::string::npos) << e;
  }
  // A directory offset pointing past the end.
  std::string moved = bytes;
  const size_t end = moved.rfind(std::string("PK\x05\x06", 4));
  ASSERT_NE(end, std::string::npos);
  moved[end + 19] = static_cast<char>(0x7f);
  EXPECT_NE(hrm::test::error_of([&] { check_zip_archive(moved, "x.pt"); }).find("x.pt: damaged zip archive"),
            std::string::npos);
}

TEST(Checkpoint, ShapeMismatchNamesTheTensor) {
  TempDir dir;
  ModelConfig c = hrm::test::tiny_config();
  ACTModel model = make_model(c);
  save_checkpoint(dir.file("ck.pt"), model);
  ModelConfig other = c;
  other.vocab_size = 9;
  try {
    load_model(dir.file("ck.pt"), &other);
    FAIL();
  } catch (const hrm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("shape mismatch for 'inner.embed_tokens.embedding_weight'"), std::string::npos)
        << e.what();
  }
}

TEST(Checkpoint, LoadsThePublishedStateDictLayout) {
  HRM_REQUIRE_FIXTURE();
  const StateDict sd = load_reference_state_dict(hrm::test::fixture_dir() + "/reference_state_dict.pt");
  EXPECT_TRUE(sd.count("inner.H_level.layers.0.self_attn.qkv_proj.weight"));
  EXPECT_TRUE(sd.count("inner.puzzle_emb.weights"));
  EXPECT_EQ(reference_key_to_ours("_orig_mod.model.inner.q_head.bias"), "inner.q_head.bias");
  EXPECT_EQ(our_key_to_reference("inner.q_head.bias"), "model.inner.q_head.bias");
  // Through load_model with the fixture's config.
  const std::string manifest = read_file(hrm::test::fixture_dir() + "/manifest.json");
  const auto pos = manifest.find("\"reference_config\"");
  ASSERT_NE(pos, std::string::npos);
  const auto open = manifest.find('{', pos), close = manifest.find('}', open);
  const ModelConfig c = ModelConfig::from_json(manifest.substr(open, close - open + 1), "manifest");
  ACTModel model = load_model(hrm::test::fixture_dir() + "/reference_state_dict.pt", &c);
  const torch::Tensor w = npy::load(hrm::test::fixture_dir() + "/params/model.inner.lm_head.weight.npy");
  EXPECT_TRUE(torch::equal(model->inner->lm_head->weight, w));
}

// ---------------------------------------------------------------- pickle programs (hrm/util/pickle.h)
namespace {
std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string u16(uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }
std::string unicode(const std::string& s) { return "X" + u32(static_cast<uint32_t>(s.size())) + s; }
std::string int1(int v) { return std::string("K") + static_cast<char>(v); }
std::string int_tuple(const std::vector<int>& v) {
  std::string out = "(";
  for (int x : v) out += int1(x);
  return out + "t";
}
// {"w": _rebuild_tensor_v2(storage '0' of `count` floats, offset, sizes, strides, False, OrderedDict())}, as
// torch.save writes it.
std::string tensor_dict_program(int count, int offset, const std::vector<int>& sizes, const std::vector<int>& strides) {
  return std::string("\x80\x02}(") + unicode("w") + "ctorch._utils\n_rebuild_tensor_v2\n((" + unicode("storage") +
         "ctorch\nFloatStorage\n" + unicode("0") + unicode("cpu") + int1(count) + "tQ" + int1(offset) +
         int_tuple(sizes) + int_tuple(strides) + "\x89" + "ccollections\nOrderedDict\n)RtRu.";
}
std::string pickle_error(const std::string& program, uint64_t record_bytes = 64) {
  return hrm::test::error_of([&] {
    check_torch_pickle(program, "p.pkl", [&](const std::string& key) -> std::optional<uint64_t> {
      if (key == "0") return record_bytes;
      return std::nullopt;
    });
  });
}

uint32_t crc32_of(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}
// A stored zip archive of (name, bytes) entries, as torch.save lays one out.
std::string zip_of(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string body, dir;
  for (const auto& [name, data] : entries) {
    const std::string common = u16(20) + u16(0) + u16(0) + u16(0) + u16(0) + u32(crc32_of(data)) +
                               u32(static_cast<uint32_t>(data.size())) + u32(static_cast<uint32_t>(data.size())) +
                               u16(static_cast<uint16_t>(name.size())) + u16(0);
    dir += "PK\x01\x02" + u16(20) + common + u16(0) + u16(0) + u16(0) + u32(0) +
           u32(static_cast<uint32_t>(body.size())) + name;
    body += "PK\x03\x04" + common + name + data;
  }
  const uint16_t n = static_cast<uint16_t>(entries.size());
  return body + dir + "PK\x05\x06" + u16(0) + u16(0) + u16(n) + u16(n) + u32(static_cast<uint32_t>(dir.size())) +
         u32(static_cast<uint32_t>(body.size())) + u16(0);
}
}  // namespace

TEST(Pickle, WhatTorchSaveWritesPasses) {
  EXPECT_EQ(pickle_error(tensor_dict_program(4, 0, {2, 2}, {2, 1}), 16), "");
  EXPECT_EQ(pickle_error(tensor_dict_program(4, 3, {0, 9}, {9, 1}), 16), "");  // empty: reads nothing
}

TEST(Pickle, UnsafeProgramsAreRefusedBeforeLibTorchRunsThem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x80\x02.", "STOP leaves 0 values"},
      {"\x80\x02}}.", "STOP leaves 2 values"},
      {"\x80\x02}", "ends without STOP"},
      {"}.X", "1 bytes after STOP"},
      {"}0.", "opcode 0x30"},
      {"h\x05.", "memo slot 5, which was never written"},
      {"cos\nsystem\n.", "'os.system'"},
      {"}r\xff\xff\xff\x7f.", "memo index 2147483647"},
      {"}(K\x01s.", "pops past a mark"},
      {"}K\x01u.", "no mark to pop to"},
      {"K\x01"
       "a.",
       "without a value to act on"},
      {"a.", "pops an empty stack"},
      {"](K\x01K\x02u.", "on something not a dict"},
      {std::string("]q\0h\0.", 6), "reads a list or dict back"},
      {"\x8a\x09" + std::string(9, '\x01') + ".", "integer of 9 bytes"},
      {std::string("X\xff\xff\0\0abc.", 9), "runs past the end"},
      {")" + std::string(100, '\x85') + ".", "nested more than 64 deep"},
      {"ctorch\nFloatStorage\n)R.", "not an allowed function"},
      {tensor_dict_program(100, 0, {10, 10}, {10, 1}),
       "storage '0' claims 100 elements of 4 bytes; its record holds 64"},
      {tensor_dict_program(4, 0, {2, 2}, {2, 2}), "reaches element 4 of a storage of 4"},
      {tensor_dict_program(4, 3, {2}, {1}), "reaches element 4 of a storage of 4"},
  };
  for (const auto& [program, expected] : cases) {
    const std::string e = pickle_error(program);
    EXPECT_NE(e.find("p.pkl: unsafe or damaged pickle at byte "), std::string::npos) << e;
    EXPECT_NE(e.find(expected), std::string::npos) << "expected '" << expected << "' in: " << e;
  }
  // A storage with no record.
  const std::string none = hrm::test::error_of([&] {
    check_torch_pickle(tensor_dict_program(4, 0, {4}, {1}), "p.pkl",
                       [](const std::string&) -> std::optional<uint64_t> { return std::nullopt; });
  });
  EXPECT_NE(none.find("storage '0' has no record in the archive"), std::string::npos) << none;
}

// The whole path through a file: the check runs before LibTorch, and what passes it loads as written.
TEST(Pickle, ACheckpointFileIsCheckedBeforeLibTorchReadsIt) {
  TempDir dir;
  std::string floats;
  for (float v : {1.f, 2.f, 3.f, 4.f}) floats.append(reinterpret_cast<const char*>(&v), 4);
  auto write = [&](const std::string& name, const std::string& program) {
    std::ofstream(dir.file(name), std::ios::binary)
        << zip_of({{"archive/data.pkl", program}, {"archive/data/0", floats}, {"archive/version", "3\n"}});
  };
  write("good.pt", tensor_dict_program(4, 0, {2, 2}, {1, 2}));
  const StateDict good = read_weights(dir.file("good.pt"), false);
  ASSERT_EQ(good.count("w"), 1u);
  EXPECT_TRUE(torch::equal(good.at("w"), torch::tensor({1.f, 2.f, 3.f, 4.f}).reshape({2, 2}).t()));
  write("overrun.pt", tensor_dict_program(64, 0, {8, 8}, {8, 1}));
  const std::string e = hrm::test::error_of([&] { read_weights(dir.file("overrun.pt"), false); });
  EXPECT_NE(e.find(dir.file("overrun.pt") + " (archive/data.pkl): unsafe or damaged pickle"), std::string::npos) << e;
  EXPECT_NE(e.find("claims 64 elements"), std::string::npos) << e;
}
