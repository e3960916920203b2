#include "hrm/train/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>

#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#endif

#include "hrm/dist/grad_reducer.h"
#include "hrm/dist/group.h"
#include "hrm/dist/launch.h"
#include "hrm/model/registry.h"
#include "hrm/nn/fused.h"
#include "hrm/optim/model_optimizer.h"
#include "hrm/optim/optimizers.h"
#include "hrm/train/train_step.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/memory.h"
#include "hrm/util/stats.h"

namespace {
// Records a chrome trace while alive (written at destruction). LibTorch builds without the legacy profiler get a
// stand-in that is never constructed: --profile is refused before the first step.
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
constexpr bool kHaveProfiler = true;
using ProfileRecorder = torch::autograd::profiler::RecordProfile;
#else
constexpr bool kHaveProfiler = false;
struct ProfileRecorder {
  explicit ProfileRecorder(const std::string&) {}
};
#endif
}  // namespace

namespace hrm {
ModelConfig bench_preset(const std::string& name) {
  ModelConfig c;
  c.seq_len = 81;
  c.vocab_size = 11;
  c.num_puzzle_identifiers = 1;
  c.hidden_size = 512;
  c.puzzle_emb_ndim = 512;
  c.num_heads = 8;
  c.expansion = 4;
  c.H_layers = c.L_layers = 4;
  c.H_cycles = c.L_cycles = 2;
  c.halt_max_steps = 16;
  c.halt_exploration_prob = 0.1;
  c.forward_dtype = "auto";
  if (name == "paper") return c;
  if (name == "small") {
    c.hidden_size = 128;
    c.puzzle_emb_ndim = 128;
    c.H_layers = c.L_layers = 2;
    return c;
  }
  throw Error("unknown bench preset '" + name + "' (expected paper or small)");
}

BenchResult benchmark_training_step(const ModelConfig& config, const BenchOptions& options) {
  check(options.steps >= 1, "bench: --steps must be at least 1 (got " + std::to_string(options.steps) + ")");
  check(options.warmup >= 0, "bench: --warmup must not be negative (got " + std::to_string(options.warmup) + ")");
  check(options.batch_size >= 1, "bench: --batch must be at least 1 (got " + std::to_string(options.batch_size) + ")");
  check(options.world_size >= 1,
        "bench: --world-size must be at least 1 (got " + std::to_string(options.world_size) + ")");
  const torch::Device device(options.device);
  // Data-parallel: join the ranks this process was started with.
  std::shared_ptr<dist::Group> group = std::make_shared<dist::Group>();
  if (options.world_size > 1) {
    const dist::LaunchInfo where = dist::launch_info_from_environment();
    check(where.world_size == options.world_size, "bench --world-size " + std::to_string(options.world_size) +
                                                      ": this process was started as one of " +
                                                      std::to_string(where.world_size) + " ranks");
    check(options.batch_size % options.world_size == 0, "bench: --batch must be a multiple of --world-size");
    dist::GroupOptions go;
    go.timeout_s = 120;
    go.cuda = device.is_cuda();
    group = std::make_shared<dist::Group>(where, go);
  }
  dist::WorldScope world(group);
  auto& tracker = CpuMemoryTracker::install();
  ModelConfig c = config;
  c.batch_size = options.batch_size;
  torch::manual_seed(0);
  set_auto_dtype_device(device.is_cuda());
  ACTModel model = make_model(c);
  model->to(device);
  model->train();
  ModelOptimizer optimizer(model, OptimizerConfig{});
  BenchResult r;
  for (const auto& p : model->parameters()) r.parameters += p.numel();

  std::unique_ptr<dist::GradientReducer> reducer;
  if (group->connected()) {
    std::vector<torch::Tensor> params;
    for (const auto& p : model->parameters()) params.push_back(p);
    reducer = std::make_unique<dist::GradientReducer>(params, *group, 4 << 20);
  }
  const int64_t B = options.batch_size / options.world_size;  // this rank's rows
  auto batch = [&]() {
    return Batch{torch::randint(1, c.vocab_size, {B, c.seq_len}, torch::kInt),
                 torch::randint(1, c.vocab_size, {B, c.seq_len}, torch::kInt), torch::zeros({B}, torch::kInt),
                 options.batch_size, group->rank() * B}
        .to(device);
  };
  Carry carry = model->initial_carry(batch());
  std::vector<double> times;
  std::vector<int64_t> step_faults;  // per timed step: the median is the steady state, the mean adds heap growth
  check(kHaveProfiler || options.profile_path.empty(), "bench --profile: this LibTorch has no legacy profiler");
  std::unique_ptr<ProfileRecorder> profile;
  for (int64_t i = 0; i < options.warmup + options.steps; ++i) {
    const Batch b = batch();
    if (i == options.warmup) {
      tracker.reset_peak();
      group->stats().reset();
      if (!options.profile_path.empty()) profile = std::make_unique<ProfileRecorder>(options.profile_path);
    }
    const int64_t faults_before = minor_page_faults();
    const auto t0 = std::chrono::steady_clock::now();
    if (reducer) reducer->prepare();
    StepResult s =
        forward_backward(model, carry, b, LossType::StablemaxCrossEntropy, static_cast<double>(options.batch_size));
    if (reducer) reducer->finish();
    optimizer.step(1e-4, 1e-2);
    optimizer.zero_grad();
    carry = std::move(s.carry);
    std::vector<torch::Tensor> loss{s.loss.loss.detach().reshape({1}).to(torch::kDouble)};
    group->all_reduce_sum(loss);   // the metrics all-reduce of a training step
    (void)loss[0].item<double>();  // one sync per step, as logging would do
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= options.warmup) {
      times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      step_faults.push_back(minor_page_faults() - faults_before);
    }
  }
  r.minor_faults_per_step = static_cast<double>(std::accumulate(step_faults.begin(), step_faults.end(), int64_t{0})) /
                            static_cast<double>(options.steps);
  r.median_step_minor_faults = median(step_faults);
  profile.reset();
  r.median_step_ms = median(times);
  r.min_step_ms = *std::min_element(times.begin(), times.end());
  r.samples_per_second = 1000.0 * static_cast<double>(options.batch_size) / r.median_step_ms;
  r.world_size = options.world_size;
  r.comm_wait_ms = 1000.0 * group->stats().wait_s / static_cast<double>(options.steps);
  r.comm_bytes = static_cast<double>(group->stats().bytes) / static_cast<double>(options.steps);
  r.peak_bytes = tracker.peak_bytes();
  return r;
}

namespace {
// Which code runs the step's norms, SwiGLUs and attention: the fused kernels (and their instruction-set path) or
// LibTorch's ops; and, in float32, whether oneDNN runs the products.
std::string kernel_path(const ModelConfig& config, const BenchOptions& options) {
  const bool cpu = torch::Device(options.device).is_cpu();
  const bool fused = cpu && nn::fused_kernels_cover(config.dtype());
  const std::string setting = std::string("HRM_FUSED_KERNELS=") + nn::fused_kernels_name(nn::fused_kernels());
  const std::string bf16_products = cpu && config.dtype() == torch::kBFloat16
                                        ? std::string(", bfloat16 products by ") + nn::bf16_product_kernels()
                                        : "";
  if (!fused) return "LibTorch ops (" + setting + ")" + bf16_products;
  const bool onednn = config.dtype() == torch::kFloat && nn::linear_uses_onednn();
  return std::string("fused kernels on the ") + nn::cpu_isa_name(nn::cpu_isa()) + " path (" + setting + ")" +
         (onednn ? std::string(", float32 products by oneDNN (") + nn::onednn_kernels() + " kernels)" : "") +
         bf16_products;
}

// Median milliseconds per call of each of `fns`, called in turn `repeats` times after one warm-up round.
std::vector<double> interleaved_medians(const std::vector<std::function<void()>>& fns, int64_t repeats) {
  std::vector<std::vector<double>> times(fns.size());
  for (int64_t r = -1; r < repeats; ++r)
    for (size_t i = 0; i < fns.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      fns[i]();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (r >= 0) times[i].push_back(ms);
    }
  std::vector<double> out;
  for (const auto& t : times) out.push_back(median(t));
  return out;
}
}  // namespace

std::string benchmark_kernels(const ModelConfig& config, int64_t batch_size, int64_t repeats) {
  check(repeats >= 1 && batch_size >= 1, "bench --kernels: --batch and --steps must be positive");
  const int64_t S = config.total_seq_len(), hidden = config.hidden_size, heads = config.num_heads;
  const int64_t D = config.head_dim(), inter = config.mlp_intermediate();
  nn::RotaryEmbedding rotary(D, S, config.rope_theta);
  const auto [cos, sin] = rotary.tables(torch::kCPU);
  const nn::RopeTables rope{cos, sin};
  const nn::FusedKernels mode_before = nn::fused_kernels();
  const nn::CpuIsa isa_before = nn::cpu_isa();
  std::string out;
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "bench --kernels: %lld rows x %lld tokens, hidden %lld, %lld heads of %lld, SwiGLU width %lld, %d "
                "threads; median ms per call over %lld calls (ratio: LibTorch ops / fused; > 1: fused is faster)\n"
                "cpu: %s\n%-8s %-9s %-26s %10s %10s %7s\n",
                (long long)batch_size, (long long)S, (long long)hidden, (long long)heads, (long long)D,
                (long long)inter, torch::get_num_threads(), (long long)repeats, cpu_description().c_str(), "path",
                "dtype", "kernel", "LibTorch", "fused", "ratio");
  out += buf;
  torch::manual_seed(0);
  for (const torch::ScalarType dtype : {torch::kFloat, torch::kBFloat16}) {
    const torch::Tensor x = torch::randn({batch_size, S, hidden}).to(dtype);
    const torch::Tensor y = torch::randn({batch_size, S, hidden}).to(dtype);
    const torch::Tensor gate_up = (torch::randn({batch_size, S, 2 * inter}) * 2).to(dtype);
    const torch::Tensor qkv = torch::randn({batch_size, S, 3 * heads, D}).to(dtype);
    // Forward without a graph, and forward + backward (sum of the output) through autograd.
    const std::vector<std::pair<std::string, std::function<torch::Tensor(bool)>>> ops = {
        {"add_rms_norm", [&](bool grad) { return nn::add_rms_norm(grad ? x.detach().requires_grad_() : x, y, 1e-5); }},
        {"swiglu", [&](bool grad) { return nn::swiglu(grad ? gate_up.detach().requires_grad_() : gate_up); }},
        {"attention",
         [&](bool grad) { return nn::attention(grad ? qkv.detach().requires_grad_() : qkv, heads, rope); }},
    };
    for (const nn::CpuIsa isa : nn::supported_cpu_isas()) {
      nn::set_cpu_isa(isa);
      for (const auto& [name, op] : ops)
        for (const bool grad : {false, true}) {
          const auto call = [&, grad, op = op](nn::FusedKernels mode) {
            return [&, grad, op, mode] {
              nn::set_fused_kernels(mode);
              if (!grad) {
                torch::NoGradGuard ng;
                op(false);
              } else {
                op(true).to(torch::kFloat).sum().backward();
              }
            };
          };
          const std::vector<double> ms =
              interleaved_medians({call(nn::FusedKernels::Off), call(nn::FusedKernels::All)}, repeats);
          std::snprintf(buf, sizeof buf, "%-8s %-9s %-26s %10.3f %10.3f %7.2f\n", nn::cpu_isa_name(isa),
                        dtype == torch::kFloat ? "float32" : "bfloat16",
                        (name + (grad ? " fwd+bwd" : " forward")).c_str(), ms[0], ms[1], ms[0] / ms[1]);
          out += buf;
        }
      if (dtype != torch::kFloat) continue;
      // One AdamATan2 step over the layers' weights (float32 parameters, whatever the forward dtype).
      const int64_t weights = (config.H_layers + config.L_layers) * (4 * hidden * hidden + 3 * hidden * inter);
      torch::Tensor param = torch::randn({weights});
      param.mutable_grad() = torch::randn({weights}) * 1e-3;
      optim::AdamATan2 adam({{"w", param}}, {});
      const auto step = [&](nn::FusedKernels mode) {
        return [&, mode] {
          nn::set_fused_kernels(mode);
          adam.step(1e-4);
        };
      };
      const std::vector<double> ms =
          interleaved_medians({step(nn::FusedKernels::Off), step(nn::FusedKernels::All)}, repeats);
      std::snprintf(buf, sizeof buf, "%-8s %-9s %-26s %10.3f %10.3f %7.2f\n", nn::cpu_isa_name(isa), "float32",
                    ("adam_atan2 " + std::to_string(weights / 1000) + "K weights").c_str(), ms[0], ms[1],
                    ms[0] / ms[1]);
      out += buf;
    }
  }
  nn::set_fused_kernels(mode_before);
  nn::set_cpu_isa(isa_before);
  // The layer's matrix products, to compare a step's GEMM throughput with: torch::linear in float32 (OpenBLAS with
  // Debian's LibTorch); where the build has it, hrm::nn::linear's oneDNN sgemm (the fused float32 path); and in bf16
  // hrm::nn::linear as the model runs it (oneDNN inside LibTorch on AVX-512 CPUs, float32 products elsewhere).
  const int64_t T = batch_size * S;
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> shapes = {
      {"qkv_proj", {hidden, 3 * hidden}},
      {"o_proj", {hidden, hidden}},
      {"gate_up_proj", {hidden, 2 * inter}},
      {"down_proj", {inter, hidden}}};
  const bool bf16_dnnl_row = (nn::bf16_products_in_float32() || nn::bf16_products_on_dot_kernels()) &&
                             nn::libtorch_runs_bf16_products_on_onednn();
  // The ceilings the rows are measured against: register-only multiply-adds on the active path (float32 rows, and
  // bf16 products run as float32 ones), AVX512-BF16 dot products (bf16 rows on them; none for oneDNN on AMX).
  const double fma_peak = nn::multiply_add_peak_gflops(false), dot_peak = nn::multiply_add_peak_gflops(true);
  const bool amx = cpu_has_flag("amx_bf16");
  std::snprintf(buf, sizeof buf,
                "peak      float32 multiply-adds (%s path) %.1f GFLOP/s; bf16 dot products (vdpbf16ps) %s GFLOP/s "
                "(register-only loops on %d threads)\n",
                nn::cpu_isa_name(nn::cpu_isa()), fma_peak,
                dot_peak > 0 ? std::to_string(static_cast<int64_t>(dot_peak + 0.5)).c_str() : "-",
                torch::get_num_threads());
  out += buf;
  std::snprintf(
      buf, sizeof buf, "%-9s %-34s %10s %10s %7s   (float32: %s; f32-dnnl: oneDNN's %s kernels;%s bfloat16: %s)\n",
      "GEMM", "[tokens x in] x [in x out]", "ms", "GFLOP/s", "% peak", blas_description().c_str(), nn::onednn_kernels(),
      bf16_dnnl_row ? " bf16-dnnl: LibTorch's bf16 products, by oneDNN;" : "", nn::bf16_product_kernels());
  out += buf;
  // A row's GFLOP/s as a percentage of its ceiling, or "-" where none was measured.
  const auto percent_of = [](double gflops, double peak) {
    char p[16];
    if (peak > 0)
      std::snprintf(p, sizeof p, "%.0f%%", 100.0 * gflops / peak);
    else
      std::snprintf(p, sizeof p, "-");
    return std::string(p);
  };
  // How a row runs its products: torch::linear (LibTorch's own route), nn::linear with every fused kernel on (oneDNN's
  // sgemm for float32), or nn::linear as the model runs it.
  enum class Route { LibTorch, FusedFloat32, AsTheModel };
  struct Variant {
    const char* name;
    torch::ScalarType dtype;
    Route route;
  };
  std::vector<Variant> variants = {{"float32", torch::kFloat, Route::LibTorch}};
  {
    nn::ScopedFusedKernels all(nn::FusedKernels::All);
    if (nn::linear_uses_onednn()) variants.push_back({"f32-dnnl", torch::kFloat, Route::FusedFloat32});
  }
  // Where the model takes bf16 products off LibTorch's oneDNN route, that route too: the rows that show why.
  if (bf16_dnnl_row) variants.push_back({"bf16-dnnl", torch::kBFloat16, Route::LibTorch});
  variants.push_back({"bfloat16", torch::kBFloat16, Route::AsTheModel});
  const auto ceiling = [&](const Variant& v) {
    if (v.dtype == torch::kFloat) return fma_peak;
    if (v.route == Route::AsTheModel && nn::bf16_products_in_float32()) return fma_peak;
    if (v.route == Route::AsTheModel && nn::bf16_products_on_dot_kernels()) return dot_peak;
    return amx ? 0.0 : dot_peak;  // oneDNN's bf16 kernels: vdpbf16ps where the CPU has no AMX
  };
  for (const Variant& v : variants) {
    const double peak = ceiling(v);
    nn::ScopedFusedKernels mode(v.route == Route::FusedFloat32 ? nn::FusedKernels::All
                                : v.route == Route::AsTheModel ? mode_before
                                                               : nn::FusedKernels::Off);
    std::vector<std::function<void()>> calls;
    std::vector<torch::Tensor> inputs, weights;
    for (const auto& [name, io] : shapes) {
      inputs.push_back(torch::randn({T, io.first}).to(v.dtype));
      weights.push_back((torch::randn({io.second, io.first}) / std::sqrt(double(io.first))).to(v.dtype));
    }
    const auto product = [&](const torch::Tensor& x, const torch::Tensor& w) {
      return v.route == Route::LibTorch ? torch::linear(x, w) : nn::linear(x, w);
    };
    for (size_t i = 0; i < shapes.size(); ++i)
      calls.push_back([&, i] {
        torch::NoGradGuard ng;
        product(inputs[i], weights[i]);
      });
    // With the backward too (dx = dy w, dw = dy^T x: three products of the forward's size), as the last L and H
    // updates of a training step run them.
    std::vector<torch::Tensor> output_grads;
    for (const auto& [name, io] : shapes) output_grads.push_back(torch::randn({T, io.second}).to(v.dtype));
    for (size_t i = 0; i < shapes.size(); ++i)
      calls.push_back([&, i] {
        product(inputs[i].detach().requires_grad_(), weights[i].detach().requires_grad_()).backward(output_grads[i]);
      });
    const std::vector<double> ms = interleaved_medians(calls, repeats);
    for (int backward = 0; backward < 2; ++backward) {
      double flops_sum = 0, ms_sum = 0;
      for (size_t i = 0; i < shapes.size(); ++i) {
        const auto [in, out_features] = shapes[i].second;
        const double t = ms[backward * shapes.size() + i];
        const double flops = (backward ? 6.0 : 2.0) * double(T) * double(in) * double(out_features);
        flops_sum += flops;
        ms_sum += t;
        const std::string what = shapes[i].first + (backward ? " fwd+bwd " : " ") + std::to_string(T) + "x" +
                                 std::to_string(in) + "x" + std::to_string(out_features);
        std::snprintf(buf, sizeof buf, "%-9s %-34s %10.3f %10.1f %7s\n", v.name, what.c_str(), t, flops / (t * 1e6),
                      percent_of(flops / (t * 1e6), peak).c_str());
        out += buf;
      }
      std::snprintf(buf, sizeof buf, "%-9s %-34s %10.3f %10.1f %7s\n", v.name,
                    backward ? "one layer's products, fwd+bwd" : "one layer's four products", ms_sum,
                    flops_sum / (ms_sum * 1e6), percent_of(flops_sum / (ms_sum * 1e6), peak).c_str());
      out += buf;
    }
  }
  // Where the MLP's first product takes SwiGLU in its epilogue (no graph: float32 on oneDNN's sgemm in L2-sized row
  // blocks, bf16 on the dot-product kernels): that one pass against the product then swiglu, each where it
  // applies (GFLOP/s of the product alone in both rows).
  for (const torch::ScalarType model_dtype : {torch::kFloat, torch::kBFloat16}) {
    if (!(model_dtype == torch::kBFloat16 ? nn::bf16_products_on_dot_kernels() : nn::linear_uses_onednn())) continue;
    if (model_dtype == torch::kFloat && !nn::linear_swiglu_in_blocks_pays(2 * inter, hidden)) {
      std::snprintf(buf, sizeof buf,
                    "one-pass  f32: not taken for w [%lld x %lld] (too large, or over %lld KiB of L2 with a block)\n",
                    (long long)(2 * inter), (long long)hidden, (long long)(cpu_l2_cache_bytes() >> 10));
      out += buf;
      continue;
    }
    const torch::Tensor x = torch::randn({T, hidden}).to(model_dtype);
    const torch::Tensor w = (torch::randn({2 * inter, hidden}) / std::sqrt(double(hidden))).to(model_dtype);
    torch::NoGradGuard ng;
    const std::vector<double> ms =
        interleaved_medians({[&] { nn::linear_swiglu(x, w); }, [&] { nn::swiglu(nn::linear(x, w)); }}, repeats);
    const double flops = 2.0 * double(T) * double(hidden) * double(2 * inter);
    const std::string shape = std::string(model_dtype == torch::kBFloat16 ? " bf16 " : " f32 ") + std::to_string(T) +
                              "x" + std::to_string(hidden) + "x" + std::to_string(2 * inter);
    const std::pair<const char*, std::string> rows[2] = {{"one-pass", "gate_up+swiglu" + shape},
                                                         {"two-ops", "gate_up, swiglu" + shape}};
    const double peak = model_dtype == torch::kBFloat16 ? dot_peak : fma_peak;
    for (int i = 0; i < 2; ++i) {
      std::snprintf(buf, sizeof buf, "%-9s %-34s %10.3f %10.1f %7s\n", rows[i].first, rows[i].second.c_str(), ms[i],
                    flops / (ms[i] * 1e6), percent_of(flops / (ms[i] * 1e6), peak).c_str());
      out += buf;
    }
  }
  return out;
}

std::string bench_report(const std::string& preset, const ModelConfig& config, const BenchOptions& options,
                         const BenchResult& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "bench %s: hidden %lld, H/L layers %lld/%lld, H/L cycles %lld/%lld, seq %lld, batch %lld, %s, "
                "%d threads, %s, %.2fM params\n"
                "  %.1f samples/s (median step %.1f ms, best %.1f ms over %lld steps), peak CPU tensor memory "
                "%.1f MiB, minor page faults per step: %lld in the median step, %.0f on average\n"
                "  cpu: %s\n",
                preset.c_str(), (long long)config.hidden_size, (long long)config.H_layers, (long long)config.L_layers,
                (long long)config.H_cycles, (long long)config.L_cycles, (long long)config.seq_len,
                (long long)options.batch_size, config.forward_dtype_description().c_str(), torch::get_num_threads(),
                kernel_path(config, options).c_str(), r.parameters / 1e6, r.samples_per_second, r.median_step_ms,
                r.min_step_ms, (long long)options.steps, r.peak_bytes / 1048576.0,
                (long long)r.median_step_minor_faults, r.minor_faults_per_step, cpu_description().c_str());
  std::string out = buf;
  if (r.world_size > 1) {
    std::snprintf(buf, sizeof buf,
                  "  %lld ranks (global batch %lld, %lld per rank): waiting on communication %.1f ms per step "
                  "(%.0f%% of the step), %.2f MiB all-reduced per rank per step\n",
                  (long long)r.world_size, (long long)options.batch_size,
                  (long long)(options.batch_size / r.world_size), r.comm_wait_ms,
                  100.0 * r.comm_wait_ms / r.median_step_ms, r.comm_bytes / 1048576.0);
    out += buf;
  }
  return out;
}

}  // namespace hrm
