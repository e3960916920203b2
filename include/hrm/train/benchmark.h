#pragma once
// Training-step benchmark: throughput and peak CPU tensor memory of full steps (ACT forward incl. the target-Q
// forward, loss, backward, both optimizers) on random data.
#include <string>

#include "hrm/config/model_config.h"

namespace hrm {

struct BenchOptions {
  int64_t batch_size = 32;
  int64_t steps = 10;  // timed steps
  int64_t warmup = 2;  // untimed steps first
  std::string device = "cpu";
  std::string profile_path;  // when set, the timed steps are traced there (chrome://tracing JSON)
  int64_t world_size = 1;    // data-parallel ranks (each runs batch_size / world_size rows); the process must have
                             // been started as one of them (dist::run_local_ranks)
};

struct BenchResult {
  double samples_per_second = 0;  // from the median step time
  double median_step_ms = 0;
  double min_step_ms = 0;
  int64_t peak_bytes = 0;  // CPU tensor memory above the model + optimizer state (CPU only)
  int64_t parameters = 0;
  // Data-parallel runs: per step, the time this rank waited on communication and the bytes it handed to it.
  double comm_wait_ms = 0;
  double comm_bytes = 0;
  int64_t world_size = 1;
  // Page faults the kernel served while timing (fresh mappings zero-filled): the mean over the timed steps, which
  // includes the heap still growing to its working size in the first ones, and the median step's count (steady state).
  double minor_faults_per_step = 0;
  int64_t median_step_minor_faults = 0;
};

// Presets: "paper" (hidden 512, 8 heads, 4+4 layers, 2x2 cycles, seq 81, puzzle emb 512, bf16) and
// "small" (hidden 128, 2+2 layers); other fields as the paper's Sudoku setup.
ModelConfig bench_preset(const std::string& name);

BenchResult benchmark_training_step(const ModelConfig& config, const BenchOptions& options);

// What `hrm bench` prints: the configuration measured (dtype, threads, kernel path) and the result.
std::string bench_report(const std::string& preset, const ModelConfig& config, const BenchOptions& options,
                         const BenchResult& result);

// `hrm bench --kernels`: each fused CPU kernel (residual + RMSNorm, SwiGLU, attention; forward without a graph,
// and forward + backward through autograd) against the LibTorch ops it replaces, at the config's shapes (batch
// rows of total_seq_len tokens), for every instruction-set path this CPU runs and both float32 and bfloat16. Each
// figure is the median of `repeats` calls, the variants interleaved call by call so that drift hits them alike.
// Then the layer's four matrix products (torch::linear at the same shapes) in float32 and bfloat16, in GFLOP/s.
std::string benchmark_kernels(const ModelConfig& config, int64_t batch_size, int64_t repeats);

}  // namespace hrm
