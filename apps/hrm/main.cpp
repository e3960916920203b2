// hrm: command-line front end. Subcommands parse flags and call the library.
#include <cstdio>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "hrm/hrm.h"

namespace {

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hrm: Hierarchical Reasoning Models in C++ (LibTorch)"};
  app.set_version_flag("--version", std::string(HRM_VERSION_STRING));
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "intra-op CPU threads (default: all cores)");

  // verify-reference
  auto* verify = app.add_subcommand("verify-reference",
                                    "replay a reference fixture of the published implementation and compare "
                                    "every saved tensor (exit 0 only if all match)");
  std::string fixture_dir;
  hrm::VerifyOptions vopt;
  bool no_free_running = false;
  verify->add_option("DIR", fixture_dir, "fixture folder (manifest.json, params/, steps/, eval/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  verify->add_option("--rtol", vopt.rtol, "relative tolerance")->capture_default_str();
  verify->add_option("--atol", vopt.atol, "absolute tolerance")->capture_default_str();
  verify->add_flag("--no-free-running", no_free_running, "skip the free-running drift report");

  // bench
  auto* bench = app.add_subcommand("bench", "training-step throughput and peak memory on random data");
  std::string preset = "paper";
  hrm::BenchOptions bopt;
  std::vector<std::string> overrides;
  bench->add_option("--preset", preset, "paper | small")->capture_default_str();
  bench->add_option("--batch", bopt.batch_size, "batch size")->capture_default_str();
  bench->add_option("--steps", bopt.steps, "timed steps")->capture_default_str();
  bench->add_option("--warmup", bopt.warmup, "untimed steps first")->capture_default_str();
  bench->add_option("--device", bopt.device, "cpu | cuda[:N]")->capture_default_str();
  bench->add_option("--profile", bopt.profile_path, "write a chrome://tracing profile of the timed steps");
  bench->add_option("overrides", overrides, "model config overrides key=value (e.g. H_cycles=4)");

  CLI11_PARSE(app, argc, argv);
  set_threads(threads);

  try {
    if (*verify) {
      vopt.free_running = !no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(fixture_dir, vopt, std::cout);
      return r.ok ? 0 : 1;
    }
    if (*bench) {
      hrm::ModelConfig config = hrm::bench_preset(preset);
      for (const auto& kv : overrides) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos) throw hrm::Error("bench: expected key=value, got '" + kv + "'");
        config.set(kv.substr(0, eq), kv.substr(eq + 1), "command line");
      }
      config.validate("command line");
      const hrm::BenchResult r = hrm::benchmark_training_step(config, bopt);
      std::printf("bench %s: hidden %lld, H/L layers %lld/%lld, H/L cycles %lld/%lld, seq %lld, batch %lld, %s, "
                  "%d threads, %.2fM params\n",
                  preset.c_str(), (long long)config.hidden_size, (long long)config.H_layers,
                  (long long)config.L_layers, (long long)config.H_cycles, (long long)config.L_cycles,
                  (long long)config.seq_len, (long long)bopt.batch_size, config.forward_dtype.c_str(),
                  torch::get_num_threads(), r.parameters / 1e6);
      std::printf("  %.1f samples/s (median step %.1f ms, best %.1f ms over %lld steps), peak CPU tensor memory "
                  "%.1f MiB\n",
                  r.samples_per_second, r.median_step_ms, r.min_step_ms, (long long)bopt.steps,
                  r.peak_bytes / 1048576.0);
      return 0;
    }
  } catch (const hrm::Error& e) {
    std::cerr << "hrm: error: " << e.what() << std::endl;
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "hrm: error: " << e.what_without_backtrace() << std::endl;
    return 2;
  }
  return 0;
}
