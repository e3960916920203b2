#pragma once
// The flags of each `hrm` subcommand (CLI11), filled into the library's request structs.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "hrm/hrm.h"

namespace hrm::cli {

struct VerifyFlags {
  std::string dir;
  hrm::VerifyOptions options;
  bool no_free_running = false;
};

struct TrainFlags {
  std::string config, resume;
  std::vector<std::string> overrides;
  bool quiet = false;
};

struct BenchFlags {
  std::string preset = "paper";
  hrm::BenchOptions options;
  bool kernels = false;
  std::vector<std::string> overrides;
};

struct AnalyzeFlags {
  hrm::analysis::AnalysisRequest request;
  std::string max_steps = "1,2,4,8,16";
};

void add_verify(CLI::App& app, VerifyFlags& f);
void add_bench(CLI::App& app, BenchFlags& f);
void add_dataset(CLI::App& app, hrm::data::DatasetRequest& r);
void add_train(CLI::App& app, TrainFlags& f);
void add_eval(CLI::App& app, hrm::EvalRequest& r, std::string& json_path);
void add_solve(CLI::App& app, hrm::SolveRequest& r);
void add_report(CLI::App& app, std::string& run_dir, std::string& out);
void add_analyze(CLI::App& app, AnalyzeFlags& f);

}  // namespace hrm::cli
