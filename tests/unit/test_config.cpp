#include <fstream>

#include "test_util.h"

using namespace hrm;
using hrm::test::error_of;
using hrm::test::TempDir;

namespace {
const char* kBase = R"({"seq_len": 81, "vocab_size": 11, "hidden_size": 64, "num_heads": 4, "H_cycles": 2,
  "L_cycles": 2, "H_layers": 1, "L_layers": 1, "halt_max_steps": 4, "expansion": 4, "pos_encodings": "rope",
  "halt_exploration_prob": 0.1)";
}  // namespace

TEST(Config, ParsesAndRoundTrips) {
  const ModelConfig c = ModelConfig::from_json(std::string(kBase) + ", \"causal\": false}", "cfg.json");
  EXPECT_EQ(c.seq_len, 81);
  EXPECT_EQ(c.forward_dtype, "auto");
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

TEST(TrainConfig, ComposesArchDefaultsAndOverrides) {
  TempDir dir;
  const std::string path = hrm::test::write_toy_config(dir.str(), "somewhere", "arch:\n  H_cycles: 3\n");
  const TrainConfig c = TrainConfig::load(path, {"lr=0.5", "arch.L_cycles=4", "arch.loss_type=softmax_cross_entropy"});
  EXPECT_EQ(c.name, "toy");
  EXPECT_EQ(c.arch.hidden_size, 64);  // from the arch file
  EXPECT_EQ(c.arch.H_cycles, 3);      // the config's arch section
  EXPECT_EQ(c.arch.L_cycles, 4);      // command line
  EXPECT_DOUBLE_EQ(c.lr, 0.5);
  EXPECT_EQ(c.loss_type, "softmax_cross_entropy");
  const TrainConfig again = TrainConfig::from_yaml(c.to_yaml(), "resolved");
  EXPECT_EQ(again.to_yaml(), c.to_yaml());
}

TEST(TrainConfig, ErrorsNameTheKeyTheFileAndTheClosestKey) {
  TempDir dir;
  std::string e =
      error_of([&] { TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d", "learning_rat: 3\n")); });
  EXPECT_NE(e.find("toy.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'learning_rat'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d"), {"arch.hiden_size=3"}); });
  EXPECT_NE(e.find("did you mean 'arch.hidden_size'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d", "epochs: many\n")); });
  EXPECT_NE(e.find("expected an integer for 'epochs'"), std::string::npos) << e;
  // Found by fuzzing (scripts/fuzz.sh config): integers beyond int64 were converted with undefined behaviour.
  for (const char* big : {"2e83", "9223372036854775808", "-1e19", ".nan", ".inf"}) {
    e = error_of([&] {
      TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d", std::string("lr_warmup_steps: ") + big + "\n"));
    });
    EXPECT_NE(e.find("expected an integer for 'lr_warmup_steps', got '" + std::string(big) + "'"), std::string::npos)
        << e;
  }
  for (const char* big : {"1e300", "18446744073709551615", "9223372036854775808"}) {
    e = error_of([&] { ModelConfig::from_json(std::string(kBase) + ", \"hidden_size\": " + big + "}", "cfg.json"); });
    EXPECT_NE(e.find("expected an integer for 'hidden_size'"), std::string::npos) << big << ": " << e;
  }
  e = error_of([&] { ModelConfig::from_json(std::string(kBase) + ", \"expansion\": 1e300}", "cfg.json"); });
  EXPECT_NE(e.find("expansion must be in (0, 1024]"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d"), {"arch.vocab_size=3"}); });
  EXPECT_NE(e.find("comes from the dataset"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::load(dir.file("nope.yaml")); });
  EXPECT_NE(e.find("cannot open config"), std::string::npos) << e;
  std::ofstream(dir.file("bad.yaml")) << "a: [1, 2\n";
  e = error_of([&] { TrainConfig::load(dir.file("bad.yaml")); });
  EXPECT_NE(e.find("invalid YAML"), std::string::npos) << e;
}

TEST(TrainConfig, ShippedConfigsLoad) {
  const std::string configs = std::string(HRM_SOURCE_DIR) + "/configs";
  for (const char* name :
       {"arc1", "arc2", "sudoku_extreme_1k", "maze_hard_1k", "sudoku_extreme_full", "quickstart_cpu",
        "trm/sudoku_extreme_mlp_t", "trm/sudoku_extreme_attention", "trm/maze_hard", "trm/arc1", "trm/arc2"}) {
    const TrainConfig c = TrainConfig::load(configs + "/" + name + ".yaml");
    EXPECT_FALSE(c.data_path.empty()) << name;
    EXPECT_TRUE(has_model(c.arch.name)) << name;
  }
  const TrainConfig trm = TrainConfig::load(configs + "/trm/sudoku_extreme_mlp_t.yaml");
  EXPECT_EQ(trm.arch.name, "trm");
  EXPECT_TRUE(trm.arch.mlp_t);
  EXPECT_EQ(trm.arch.pos_encodings, "none");
  EXPECT_EQ(trm.arch.puzzle_emb_len, 16);
  EXPECT_TRUE(trm.arch.no_ACT_continue);
  EXPECT_TRUE(trm.ema);
  const TrainConfig baseline = TrainConfig::load(configs + "/sudoku_extreme_1k.yaml", {"arch.name=transformer"});
  EXPECT_EQ(baseline.arch.name, "transformer");
  const TrainConfig full = TrainConfig::load(configs + "/sudoku_extreme_full.yaml");
  EXPECT_EQ(full.loss_type, "softmax_cross_entropy");
  EXPECT_EQ(full.arch.L_cycles, 8);
  EXPECT_EQ(full.arch.pos_encodings, "learned");
  EXPECT_EQ(full.global_batch_size, 2304);
  const TrainConfig arc = TrainConfig::load(configs + "/arc1.yaml");
  EXPECT_EQ(arc.arch.hidden_size, 512);
  EXPECT_EQ(arc.arch.halt_max_steps, 16);
  EXPECT_EQ(arc.arch.forward_dtype, "auto");
}

// The CPUs measured (docs/benchmarks.md), by vendor and flags (Linux's names): bf16 where its products beat float32.
TEST(Config, Bf16ProductsBeatFloat32OnAmxAndAmdAvx512Bf16Only) {
  const std::string avx2 = "fpu sse4_2 avx fma avx2";
  const std::string avx512 = avx2 + " avx512f avx512dq avx512bw avx512vl";
  const CpuFacts zen5{"AuthenticAMD", avx512 + " avx512_bf16 avx512_vnni", "", ""};
  const CpuFacts zen3{"AuthenticAMD", avx2, "", ""};  // family 25 model 1: AVX2 only
  const CpuFacts emerald_rapids_in_vm{"GenuineIntel", avx512 + " avx512_bf16 avx512_fp16", "", ""};  // AMX hidden
  const CpuFacts sapphire_rapids{"GenuineIntel", avx512 + " avx512_bf16 amx_bf16 amx_tile amx_int8", "", ""};
  for (const CpuFacts* c : {&zen5, &emerald_rapids_in_vm, &sapphire_rapids}) EXPECT_TRUE(has_native_bf16(*c));
  EXPECT_FALSE(has_native_bf16(zen3));
  EXPECT_TRUE(bf16_products_beat_float32(zen5));
  EXPECT_TRUE(bf16_products_beat_float32(sapphire_rapids));
  EXPECT_FALSE(bf16_products_beat_float32(emerald_rapids_in_vm));
  EXPECT_FALSE(bf16_products_beat_float32(zen3));
  // A forced avx2 path, or oneDNN capped below the kernels that make bf16 fast, stands for a CPU without them.
  CpuFacts forced = zen5;
  forced.hrm_cpu_isa = "avx2";
  EXPECT_FALSE(has_native_bf16(forced));
  EXPECT_FALSE(bf16_products_beat_float32(forced));
  forced = zen5;
  forced.onednn_cap = "AVX2";
  EXPECT_FALSE(bf16_products_beat_float32(forced));
  forced.onednn_cap = "AVX512_CORE_BF16";
  EXPECT_TRUE(bf16_products_beat_float32(forced));
  forced = sapphire_rapids;
  forced.onednn_cap = "AVX512_CORE_BF16";  // no AMX tiles: the FMA rate again
  EXPECT_TRUE(has_native_bf16(forced));
  EXPECT_FALSE(bf16_products_beat_float32(forced));
  forced.onednn_cap = "AVX512_CORE_AMX";
  EXPECT_TRUE(bf16_products_beat_float32(forced));

  // hrm's AVX512-BF16 dot-product kernels: where bf16 wins without AMX tiles (oneDNN's AMX kernels are faster).
  EXPECT_TRUE(bf16_products_on_dot_kernels(zen5));
  for (const CpuFacts* c : {&zen3, &emerald_rapids_in_vm, &sapphire_rapids})
    EXPECT_FALSE(bf16_products_on_dot_kernels(*c)) << c->flags;
  forced = zen5;
  forced.hrm_cpu_isa = "avx2";
  EXPECT_FALSE(bf16_products_on_dot_kernels(forced));
}

// Debian 12's OpenBLAS falls back to SSE3 kernels on CPU models newer than its table (Emerald Rapids: "Prescott").
TEST(Config, OpenBlasKernelsWithoutAvx2AreReplacedWhereTheCpuHasIt) {
  const CpuFacts emerald_rapids{"GenuineIntel", "sse4_2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16",
                                "", ""};
  const CpuFacts zen3{"AuthenticAMD", "sse4_2 avx fma avx2", "", ""};
  const CpuFacts old_cpu{"GenuineIntel", "sse4_2 avx", "", ""};
  EXPECT_STREQ(blas_core_fitting("Prescott", emerald_rapids), "SkylakeX");
  EXPECT_STREQ(blas_core_fitting("Prescott", zen3), "Haswell");
  EXPECT_STREQ(blas_core_fitting("Sandybridge", zen3), "Haswell");
  EXPECT_EQ(blas_core_fitting("Sandybridge", old_cpu), nullptr);  // its best already
  for (const char* fine : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})
    EXPECT_EQ(blas_core_fitting(fine, emerald_rapids), nullptr) << fine;
}

// hrm reads the CPU with CPUID (as its kernels' dispatch does); on the machine itself that is what the kernel lists in
// /proc/cpuinfo. (Under user-mode emulation /proc/cpuinfo is the host's: the emulated-CPU test leaves this one out.)
TEST(Config, CpuFlagsFromCpuidAreTheKernelsList) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags, family, model;
  const auto value = [&] { return line.substr(std::min(line.size(), line.find(':') + 2)); };
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0 && flags.empty()) flags = " " + value() + " ";
    if (line.rfind("cpu family", 0) == 0 && family.empty()) family = value();
    if (line.rfind("model\t", 0) == 0 && model.empty()) model = value();
  }
#if defined(__x86_64__)
  if (flags.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  const std::string ours = " " + cpu_flags() + " ";
  for (const char* f :
       {"fma", "movbe", "avx2", "bmi2", "avx512f", "avx512dq", "avx512bw", "avx512vl", "amx_bf16", "avx512_bf16"}) {
    const std::string word = std::string(" ") + f + " ";
    EXPECT_EQ(ours.find(word) != std::string::npos, flags.find(word) != std::string::npos) << f << ": " << ours;
  }
  EXPECT_NE(ours.find(" avx2 "), std::string::npos) << "hrm's x86-64 machines all have AVX2";
  EXPECT_NE(cpu_description().find("(family " + family + " model " + model + ")"), std::string::npos)
      << cpu_description();
#else
  EXPECT_EQ(cpu_flags(), "");
#endif
}

TEST(Config, AutoDtypeIsBfloat16WhereItsProductsAreFasterElseFloat32) {
  ModelConfig c;
  EXPECT_EQ(c.forward_dtype, "auto");
  EXPECT_EQ(c.resolved_forward_dtype(), cpu_bf16_products_beat_float32() ? "bfloat16" : "float32");
  // Start lines say why auto resolved as it did.
  EXPECT_EQ(c.forward_dtype_description(),
            cpu_bf16_products_beat_float32() ? "bfloat16 (auto: this CPU's bf16 products beat float32)"
            : cpu_has_native_bf16()          ? "float32 (auto: this CPU's bf16 products are not faster)"
                                             : "float32 (auto: no native bf16)");
  set_auto_dtype_device(/*cuda=*/true);  // CUDA computes bf16 natively
  EXPECT_EQ(c.dtype(), torch::kBFloat16);
  EXPECT_EQ(c.forward_dtype_description(), "bfloat16 (auto: CUDA)");
  set_auto_dtype_device(false);
  c.forward_dtype = "float32";  // an explicit dtype wins
  EXPECT_EQ(c.dtype(), torch::kFloat);
  EXPECT_EQ(c.forward_dtype_description(), "float32");
  c.forward_dtype = "half";
  EXPECT_THROW(c.validate(), hrm::Error);
  // Configs and checkpoints keep "auto", so another machine resolves it again.
  c.forward_dtype = "auto";
  c.seq_len = c.vocab_size = 4;
  EXPECT_NE(c.to_json().find("\"forward_dtype\": \"auto\""), std::string::npos);
}

// Counts and limits a negative value cannot mean are refused by name (threads=-2 used to run on all cores,
// max_steps=-1 and time_limit_minutes=-1 as if unset, rope_theta=-5 trained to a non-finite loss).
TEST(TrainConfig, NegativeCountsAndLimitsAreRefused) {
  TempDir dir;
  const std::string config = hrm::test::write_toy_config(dir.str(), "d");
  for (const auto& [override_, expected] :
       std::vector<std::pair<std::string, std::string>>{{"threads=-2", "threads must be >= 0"},
                                                        {"max_steps=-1", "max_steps must be >= 0"},
                                                        {"time_limit_minutes=-1", "time_limit_minutes must be >= 0"},
                                                        {"lr_warmup_steps=-5", "lr_warmup_steps must be >= 0"},
                                                        {"log_every=-1", "log_every must be >= 0"},
                                                        {"weight_decay=-0.1", "weight decays must be >= 0"},
                                                        {"arch.rope_theta=-5", "rope_theta must be > 0 with RoPE"}}) {
    const std::string e = error_of([&] { TrainConfig::load(config, {override_}); });
    EXPECT_NE(e.find(expected), std::string::npos) << override_ << ": " << e;
  }
  EXPECT_NO_THROW(TrainConfig::load(config, {"threads=1", "max_steps=3", "time_limit_minutes=0.5"}));
}

// A key given twice is an error naming both lines: yaml-cpp let a second `lr:` win and ignored a second `arch:`.
TEST(TrainConfig, RepeatedKeysAreRefusedWithBothLines) {
  TempDir dir;
  std::string e =
      error_of([&] { TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d", "lr: 5.0\nlr: 1.0\n")); });
  EXPECT_NE(e.find("toy.yaml:"), std::string::npos) << e;
  EXPECT_NE(e.find(": duplicate key 'lr' (first at line "), std::string::npos) << e;
  e = error_of([&] {
    TrainConfig::load(hrm::test::write_toy_config(dir.str(), "d", "arch:\n  hidden_size: 64\n  hidden_size: 32\n"));
  });
  EXPECT_NE(e.find("duplicate key 'hidden_size'"), std::string::npos) << e;
  e = error_of([&] { TrainConfig::from_yaml("epochs: 2\nepochs: 3\n", "run/config.yaml"); });
  EXPECT_EQ(e, "run/config.yaml:2: duplicate key 'epochs' (first at line 1)");
}
