#include <c10/core/CPUAllocator.h>

#include "test_util.h"

using namespace hrm;

namespace {
ModelConfig memory_config(int64_t h_cycles, int64_t l_cycles) {
  ModelConfig c = hrm::test::tiny_config();
  c.hidden_size = 64;
  c.num_heads = 4;
  c.seq_len = 64;
  c.H_layers = 2;
  c.L_layers = 2;
  c.H_cycles = h_cycles;
  c.L_cycles = l_cycles;
  return c;
}

// Peak CPU tensor memory of one training step (forward, loss, backward), above what was live before it.
int64_t step_peak(const ModelConfig& c) {
  auto& tracker = CpuMemoryTracker::install();
  torch::manual_seed(0);
  ACTModel model = make_model(c);
  model->train();
  const Batch b = hrm::test::random_batch(c, 16);
  const Carry carry = model->initial_carry(b);
  tracker.reset_peak();
  const int64_t before = tracker.current_bytes();
  {
    auto [next, out] = model->forward(carry, b);
    act_loss(next, out, LossType::StablemaxCrossEntropy).loss.backward();
  }
  return tracker.peak_bytes() - before;
}
}  // namespace

TEST(Memory, TrackerSeesAllocations) {
  auto& tracker = CpuMemoryTracker::install();
  const int64_t before = tracker.current_bytes();
  {
    const torch::Tensor t = torch::empty({1 << 20});
    EXPECT_GE(tracker.current_bytes() - before, 4 << 20);
  }
  EXPECT_EQ(tracker.current_bytes(), before);
}

TEST(Memory, TrainingStepPeakIsFlatInCycles) {
  const int64_t small = step_peak(memory_config(1, 1));
  const int64_t large = step_peak(memory_config(4, 4));  // 16x the module calls
  std::cout << "peak bytes of a training step: 1x1 cycles " << small << ", 4x4 cycles " << large << std::endl;
  EXPECT_GT(small, 0);
  EXPECT_LT(static_cast<double>(large), 1.15 * static_cast<double>(small));
}

TEST(Memory, BackpropThroughAllCyclesWouldGrow) {
  // The control experiment: the same 16 module calls with gradient (BPTT) need far more memory, so the test above
  // would catch a lost no-grad guard.
  auto& tracker = CpuMemoryTracker::install();
  const ModelConfig c = memory_config(1, 1);
  torch::manual_seed(0);
  auto inner = std::make_shared<HRMCore>(c);
  const Batch b = hrm::test::random_batch(c, 16);
  InnerCarry carry = inner->empty_carry(16);
  tracker.reset_peak();
  const int64_t before = tracker.current_bytes();
  const torch::Tensor x = inner->input_embeddings(b);
  torch::Tensor z = carry.z_L;
  for (int i = 0; i < 16; ++i) z = inner->L_level(z, x, nn::RopeTables{});
  z.sum().backward();
  const int64_t bptt = tracker.peak_bytes() - before;
  EXPECT_GT(static_cast<double>(bptt), 4.0 * static_cast<double>(step_peak(memory_config(1, 1))));
}

// Blocks above glibc's 32 MiB mmap ceiling are kept for reuse: the second use of a large temporary finds its memory
// mapped already (no page faults), and a slightly smaller request reuses the same block.
TEST(Memory, LargeTemporariesAreReusedNotMappedAnew) {
  keep_freed_cpu_memory();
  const int64_t n = 64 << 20;  // 256 MiB of floats: 65536 pages
  void* first = nullptr;
  {
    torch::Tensor t = torch::empty({n / 4});
    t.fill_(1.0f);
    first = t.data_ptr();
  }
  const int64_t before = minor_page_faults();
  {
    torch::Tensor t = torch::empty({n / 4 - 1000});  // a little smaller: the same cached block
    t.fill_(2.0f);
    EXPECT_EQ(t.data_ptr(), first);
    EXPECT_EQ(t[123].item<float>(), 2.0f);
  }
  EXPECT_LT(minor_page_faults() - before, 1000) << "a fresh mapping of 256 MiB takes ~65536 faults";
  // Of two freed blocks of a size, the last freed comes back first (the likelier to be in cache).
  {
    void* last = nullptr;
    {
      torch::Tensor a = torch::empty({16 << 20}), b = torch::empty({16 << 20});  // 64 MiB each (cached under ASan too)
      last = b.data_ptr();
      a.reset();
    }  // b freed after a
    EXPECT_EQ(torch::empty({16 << 20}).data_ptr(), last);
  }
  // raw allocations (raw_allocate / raw_deallocate) of both sizes go through the same allocator
  c10::Allocator* allocator = c10::GetCPUAllocator();
  for (const size_t bytes : {size_t{1} << 10, size_t{40} << 20}) {
    void* p = allocator->raw_allocate(bytes);
    ASSERT_NE(p, nullptr);
    static_cast<char*>(p)[bytes - 1] = 1;
    allocator->raw_deallocate(p);
  }
}

// Blocks of a few MiB freed at the end of every step come back in the next one even when long-lived allocations
// land between them (as a profiler's event records do): glibc's heap alone let such allocations split its freed
// blocks, and a fresh 4 MiB block (~1030 faults) was taken every few steps (`hrm bench --profile`: 35-46k faults
// and ~130 MB of resident memory more per small-preset step).
TEST(Memory, AStepHoldingMoreThanTwoGiBIsReusedWhole) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "built with AddressSanitizer, whose allocator replaces glibc's: page faults are not comparable";
#endif
  // Freed large blocks are kept up to the most bytes the process has had in use at once (2 GiB at least): a step
  // holding 2.25 GiB at its peak gets every block back the next time. (Kept up to a fixed 2 GiB, 4 of these 36
  // blocks were unmapped and mapped anew: ~65k faults per step.)
  keep_freed_cpu_memory();
  const auto step = [] {
    std::vector<torch::Tensor> blocks;
    for (int i = 0; i < 36; ++i) blocks.push_back(torch::full({16 << 20}, float(i)));  // 64 MiB each
    EXPECT_EQ(blocks.back()[7].item<float>(), 35.0f);
  };
  step();
  const int64_t before = minor_page_faults();
  step();
  EXPECT_LT(minor_page_faults() - before, 2000) << "36 blocks of 64 MiB: 16384 faults per block mapped anew";
}

TEST(Memory, BlocksOfAStepAreReusedAroundLongLivedAllocations) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "built with AddressSanitizer, whose allocator replaces glibc's: page faults are not comparable";
#endif
  keep_freed_cpu_memory();
  std::vector<std::unique_ptr<char[]>> long_lived;
  int64_t late_faults = 0;
  for (int step = 0; step < 16; ++step) {
    const int64_t before = minor_page_faults();
    {
      std::vector<torch::Tensor> live;
      for (int i = 0; i < 16; ++i) {
        live.push_back(torch::empty({(1 << 20) + i * 1024}));  // 4 MiB and a little more
        live.back().fill_(1.0f);
        if (i % 3 == 2) live.erase(live.begin());
        if (i % 5 == 0) long_lived.emplace_back(new char[256 << 10]);
      }
    }
    if (step >= 4) late_faults += minor_page_faults() - before;
  }
  EXPECT_LT(late_faults, 512) << "faults over steps 4-15; one fresh 4 MiB block takes ~1030";
}

// A training step at a long sequence (900 tokens, ARC's length) faults no more pages in steady state than it
// would at a short one: its temporaries -- [8, 2, 900, 900] float32 scores (52 MB, above glibc's mmap ceiling) on
// the op-by-op path -- come back from the kept blocks instead of fresh mappings (which would fault ~12.7k pages per
// score tensor, every step). The bound is 1/20 of the pages the step's tensors span at their peak.
TEST(Memory, LongSequenceStepsDoNotFaultInFreshPages) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan replaces malloc: its quarantine and its own mappings fault fresh pages for every block below the cache's
  // 32 MiB, so the count measures ASan, not the allocator the release build runs on (244k faults per step under it).
  GTEST_SKIP() << "built with AddressSanitizer, whose allocator replaces glibc's: page faults are not comparable";
#endif
  keep_freed_cpu_memory();  // as set_threads does for the CLI, the trainer and hrm bench
  for (const auto mode : {nn::FusedKernels::Off, nn::FusedKernels::Auto}) {
    for (const char* dtype : {"float32", "bfloat16"}) {
      nn::ScopedFusedKernels m(mode);
      ModelConfig c = hrm::test::tiny_config();
      c.hidden_size = 32;
      c.seq_len = 900;
      c.H_cycles = c.L_cycles = 1;
      c.halt_max_steps = 2;
      c.forward_dtype = dtype;
      BenchOptions o;
      o.batch_size = 8;
      o.steps = 5;
      o.warmup = 3;
      const BenchResult r = benchmark_training_step(c, o);
      const int64_t pages = r.peak_bytes / 4096;
      SCOPED_TRACE(std::string(dtype) + ", fused kernels " + nn::fused_kernels_name(mode));
      // A step whose tensors span many pages: the scores alone are 12.7k on the op-by-op float32 path; the fused bf16
      // one (no score matrix, no [tokens, 2 x inter] product in the no-grad calls where SwiGLU takes the product in
      // one pass) peaks at ~9.8k.
      EXPECT_GT(pages, 8000);
      EXPECT_LT(r.median_step_minor_faults, pages / 20) << "peak tensor memory " << r.peak_bytes << " bytes";
    }
  }
}

// hrm bench's counts are checked before anything runs (--steps 0 used to index an empty list of step times).
TEST(Bench, RejectsCountsItCannotMeasure) {
  const ModelConfig c = hrm::test::tiny_config();
  const auto message = [&](BenchOptions o) -> std::string {
    try {
      benchmark_training_step(c, o);
    } catch (const hrm::Error& e) {
      return e.what();
    }
    return "no error";
  };
  BenchOptions o;
  o.steps = 0;
  EXPECT_EQ(message(o), "bench: --steps must be at least 1 (got 0)");
  o = BenchOptions{};
  o.warmup = -1;
  EXPECT_EQ(message(o), "bench: --warmup must not be negative (got -1)");
  o = BenchOptions{};
  o.batch_size = 0;
  EXPECT_EQ(message(o), "bench: --batch must be at least 1 (got 0)");
  o = BenchOptions{};
  o.world_size = 0;
  EXPECT_EQ(message(o), "bench: --world-size must be at least 1 (got 0)");
}

// hrm bench and hrm eval report medians of steps and batches (the upper one of an even count).
TEST(Stats, MedianOfUnsortedValues) {
  EXPECT_EQ(hrm::median(std::vector<int64_t>{9, 1, 5}), 5);
  EXPECT_EQ(hrm::median(std::vector<int64_t>{4, 1, 3, 2}), 3);
  EXPECT_DOUBLE_EQ(hrm::median(std::vector<double>{2.5}), 2.5);
  EXPECT_EQ(hrm::median(std::vector<int64_t>{}), 0);
}
