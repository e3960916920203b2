// hrm: command-line front end. Subcommands parse flags and call the library.
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

  CLI11_PARSE(app, argc, argv);
  set_threads(threads);

  try {
    if (*verify) {
      vopt.free_running = !no_free_running;
      const hrm::VerifyResult r = hrm::verify_reference(fixture_dir, vopt, std::cout);
      return r.ok ? 0 : 1;
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
