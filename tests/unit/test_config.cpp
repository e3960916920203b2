#include "test_util.h"

using namespace hrm;
using hrm::test::error_of;

namespace {
const char* kBase = R"({"seq_len": 81, "vocab_size": 11, "hidden_size": 64, "num_heads": 4, "H_cycles": 2,
  "L_cycles": 2, "H_layers": 1, "L_layers": 1, "halt_max_steps": 4, "expansion": 4, "pos_encodings": "rope",
  "halt_exploration_prob": 0.1)";
}  // namespace

TEST(Config, ParsesAndRoundTrips) {
  const ModelConfig c = ModelConfig::from_json(std::string(kBase) + ", \"causal\": false}", "cfg.json");
  EXPECT_EQ(c.seq_len, 81);
  EXPECT_EQ(c.forward_dtype, "bfloat16");
  EXPECT_EQ(c.head_dim(), 16);
  const ModelConfig again = ModelConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.to_json(), c.to_json());
}

TEST(Config, UnknownKeysWrongTypesAndBadValuesAreNamed) {
  std::string e = error_of([] { ModelConfig::from_json(std::string(kBase) + ", \"hiden_size\": 3}", "cfg.json"); });
  EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  EXPECT_NE(e.find("'hiden_size'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'hidden_size'"), std::string::npos) << e;
  e = error_of([] { ModelConfig::from_json(std::string(kBase) + ", \"H_layers\": \"four\"}", "cfg.json"); });
  EXPECT_NE(e.find("expected an integer for 'H_layers'"), std::string::npos) << e;
  e = error_of([] { ModelConfig::from_json(std::string(kBase) + ", \"pos_encodings\": \"alibi\"}", "cfg.json"); });
  EXPECT_NE(e.find("pos_encodings"), std::string::npos) << e;
  e = error_of([] { ModelConfig::from_json(std::string(kBase) + ", \"num_heads\": 5}", "cfg.json"); });
  EXPECT_NE(e.find("multiple of num_heads"), std::string::npos) << e;
  e = error_of([] { ModelConfig::from_json("{\"seq_len\": 3", "cfg.json"); });
  EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
  e = error_of([] { ModelConfig::from_json("{\"seq_len\": 3}", "cfg.json"); });
  EXPECT_NE(e.find("missing model config key"), std::string::npos) << e;
}

TEST(Config, SetFromText) {
  ModelConfig c;
  c.set("H_cycles", "3", "cli");
  c.set("forward_dtype", "float32", "cli");
  c.set("no_ACT_continue", "true", "cli");
  c.set("expansion", "2.5", "cli");
  EXPECT_EQ(c.H_cycles, 3);
  EXPECT_EQ(c.forward_dtype, "float32");
  EXPECT_TRUE(c.no_ACT_continue);
  EXPECT_DOUBLE_EQ(c.expansion, 2.5);
  EXPECT_NE(error_of([&] { c.set("H_cycle", "3", "cli"); }).find("did you mean 'H_cycles'"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("hiden", "3", "cli"); }).find("did you mean 'hidden_size'"), std::string::npos);
  EXPECT_EQ(closest_match("hid", ModelConfig::keys()), "hidden_size");
  EXPECT_NE(error_of([&] { c.set("H_cycles", "x", "cli"); }).find("expected an integer"), std::string::npos);
}
