#include <filesystem>
#include <fstream>

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
