// hrm: command-line front end. Parses flags and calls the library; what each command does lives there.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "flags.h"

namespace {
using namespace hrm::cli;

// `hrm verify-reference` exit code when the fixture's model is not in this build (ctest's skip code).
constexpr int kSkipped = 77;

int run_train(TrainFlags& f, int threads) {
  // Evaluation on the test split during training, and the run's report when it stops.
  const hrm::TrainOptions options{!f.quiet, hrm::test_split_evaluator(!f.quiet), [](const std::string& run_dir) {
                                    hrm::log::info("report: " + hrm::analysis::write_report(run_dir));
                                  }};
  hrm::TrainOutcome o;
  if (!f.resume.empty()) {
    // With --resume there is no CONFIG: a first positional key=value is an override.
    if (!f.config.empty()) {
      if (f.config.find('=') == std::string::npos)
        throw hrm::Error("train: give either CONFIG or --resume RUN_DIR, not both");
      f.overrides.insert(f.overrides.begin(), f.config);
    }
    if (threads > 0) f.overrides.push_back("threads=" + std::to_string(threads));
    o = hrm::resume_training(f.resume, f.overrides, options);
  } else {
    if (f.config.empty()) throw hrm::Error("train: give a CONFIG file or --resume RUN_DIR");
    hrm::TrainConfig config = hrm::TrainConfig::load(f.config, f.overrides);
    if (threads > 0) config.threads = threads;
    o = hrm::train(config, options);
  }
  return o.finished || o.interrupted ? 0 : 1;
}

int run_eval(const hrm::EvalRequest& r, const std::string& json_path) {
  const hrm::EvalReport report = hrm::evaluate_checkpoint(r);
  std::printf("eval %s on %s (%s, halt_max_steps %lld, %s weights):\n", r.checkpoint.c_str(), report.data_path.c_str(),
              hrm::data::to_string(report.kind).c_str(), (long long)report.halt_max_steps, report.ema ? "EMA" : "raw");
  for (const auto& [k, v] : report.metrics) std::printf("  %-18s %.6g\n", k.c_str(), v);
  std::printf("  (%lld batches; minor page faults per batch: %lld in the median batch, %.0f on average)\n",
              (long long)report.batches, (long long)report.median_batch_minor_faults, report.minor_faults_per_batch);
  const std::string json = hrm::metrics_json(report.metrics);
  if (!json_path.empty()) hrm::write_file_atomic(json_path, json + "\n");
  std::printf("%s\n", json.c_str());
  return 0;
}

int run_bench(const BenchFlags& f, int argc, char** argv) {
  // --world-size K: this process starts the K ranks, which run the benchmark.
  if (f.options.world_size > 1 && !hrm::dist::launch_info_from_environment().distributed())
    return hrm::dist::run_local_ranks(std::vector<std::string>(argv, argv + argc), f.options.world_size);
  hrm::ModelConfig config = hrm::bench_preset(f.preset);
  for (const auto& o : f.overrides) config.apply_override(o, "command line");
  config.validate("command line");
  if (f.kernels)
    return std::printf("%s", hrm::benchmark_kernels(config, f.options.batch_size, f.options.steps).c_str()) < 0;
  const hrm::BenchResult r = hrm::benchmark_training_step(config, f.options);
  if (hrm::dist::launch_info_from_environment().rank == 0)
    std::printf("%s", hrm::bench_report(f.preset, config, f.options, r).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  hrm::deliver_stop_signals_on_a_waiting_thread();  // before any other thread starts
  bool float32_products_on_openmp = false;
  try {
    hrm::nn::apply_cpu_isa_environment();  // before any product runs
    float32_products_on_openmp = hrm::nn::linear_uses_onednn();
  } catch (const std::exception&) {  // a bad HRM_CPU_ISA: reported by the command that runs kernels
  }
  hrm::use_passive_openmp_workers_for_float32(argv, float32_products_on_openmp);
  hrm::report_file_size_limit_as_error();
  CLI::App app{"hrm: Hierarchical Reasoning Models in C++ (LibTorch)"};
  app.set_version_flag("--version", std::string(HRM_VERSION_STRING));
  app.require_subcommand(1);
  int threads = 0;
  std::string log_level = "info";
  app.add_option("--threads", threads, "intra-op CPU threads (default: all cores)")->check(CLI::Range(0, 1 << 16));
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error | off")->capture_default_str();

  VerifyFlags verify;
  BenchFlags bench;
  hrm::data::DatasetRequest dataset;
  TrainFlags train;
  hrm::EvalRequest eval;
  std::string eval_json;
  hrm::SolveRequest solve;
  std::string report_dir, report_out;
  AnalyzeFlags analyze;
  add_verify(app, verify);
  add_bench(app, bench);
  add_dataset(app, dataset);
  add_train(app, train);
  add_eval(app, eval, eval_json);
  add_solve(app, solve);
  add_report(app, report_dir, report_out);
  add_analyze(app, analyze);
  CLI11_PARSE(app, argc, argv);

  try {
    hrm::log::set_level(hrm::log::parse_level(log_level));
    hrm::set_threads(threads);
    hrm::nn::cpu_isa();               // an HRM_CPU_ISA this CPU cannot run is an error before any work
    hrm::nn::bf16_product_kernels();  // so is a bad HRM_BF16_PRODUCTS, whatever the dtype
    const std::string command = app.get_subcommands().front()->get_name();
    if (command == "verify-reference") {
      hrm::use_reference_blas_kernels(argv);
      verify.options.free_running = !verify.no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(verify.dir, verify.options, std::cout);
      if (!r.unsupported_model.empty()) std::cout << "SKIPPED: no '" << r.unsupported_model << "' model" << std::endl;
      return r.ok ? 0 : r.unsupported_model.empty() ? 1 : kSkipped;
    }
    hrm::use_blas_kernels_fitting_the_cpu(argv);  // every other command
    if (command == "train") return run_train(train, threads);
    if (command == "eval") return run_eval(eval, eval_json);
    if (command == "solve") return std::printf("%s", hrm::solve(solve).c_str()) < 0;
    if (command == "dataset") return std::printf("%s", hrm::data::build_dataset(dataset).c_str()) < 0;
    if (command == "bench") return run_bench(bench, argc, argv);
    if (command == "report")
      return std::printf("%s\n", hrm::analysis::write_report(report_dir, report_out).c_str()) < 0;
    if (command == "analyze") {
      analyze.request.max_steps = hrm::parse_int_list(analyze.max_steps, "--max-steps");
      return std::printf("%s\n", hrm::analysis::run_analysis(analyze.request).c_str()) < 0;
    }
  } catch (const hrm::Error& e) {
    std::cerr << "hrm: error: " << e.what() << std::endl;
    return 2;
  } catch (const c10::Error& e) {  // LibTorch's C++ backtrace only when asked for
    const bool debug = log_level == "debug" || log_level == "trace";
    std::cerr << "hrm: error: " << (debug ? e.what() : e.what_without_backtrace()) << std::endl;
    return 2;
  }
  return 0;
}
