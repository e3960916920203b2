#include "hrm/train/metrics_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <vector>

#include <nlohmann/json.hpp>

#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm {
namespace {
namespace fs = std::filesystem;
using Json = nlohmann::json;

const std::vector<std::string> kCsvColumns = {
    "split",           "step",           "epoch",           "lr",    "samples_per_s", "loss",        "count",
    "accuracy",        "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss",       "q_halt_loss", "q_continue_loss",
    "valid_solutions", "elapsed_s"};

}  // namespace

MetricsLog::MetricsLog(const std::string& dir) : jsonl_(dir + "/metrics.jsonl"), csv_(dir + "/metrics.csv") {}

void MetricsLog::truncate_after(int64_t step, bool keep_eval_at_step) {
  for (const std::string* path : {&jsonl_, &csv_}) {
    if (!fs::exists(*path)) continue;
    std::ifstream in(*path);
    std::string line, kept;
    bool header = path == &csv_;
    while (std::getline(in, line)) {
      if (header) {
        kept += line + "\n";
        header = false;
        continue;
      }
      int64_t s = -1;
      std::string split;
      if (path == &jsonl_) {
        try {
          const Json row = Json::parse(line);
          s = row.at("step").get<int64_t>();
          split = row.at("split").get<std::string>();
        } catch (const std::exception&) {
          continue;  // a torn last line of a killed run
        }
      } else {
        const auto c1 = line.find(','), c2 = line.find(',', c1 + 1);
        try {
          s = std::stoll(line.substr(c1 + 1, c2 - c1 - 1));
        } catch (const std::exception&) {
          continue;  // likewise
        }
        split = line.substr(0, c1);
      }
      if (s < step || (s == step && (split != "eval" || keep_eval_at_step))) kept += line + "\n";
    }
    write_file_atomic(*path, kept);
  }
}

void MetricsLog::write(const std::string& split, int64_t step, double epoch, const std::map<std::string, double>& m) {
  Json j = {{"split", split}, {"step", step}, {"epoch", epoch}};
  for (const auto& [k, v] : m) j[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  {
    std::ofstream jsonl(jsonl_, std::ios::app);
    jsonl << j.dump() << "\n";
    jsonl.flush();
    if (!jsonl) throw Error("cannot append to " + jsonl_ + ": " + std::strerror(errno));
  }
  const bool fresh = !fs::exists(csv_);
  std::ofstream csv(csv_, std::ios::app);
  if (fresh) {
    for (size_t i = 0; i < kCsvColumns.size(); ++i) csv << (i ? "," : "") << kCsvColumns[i];
    csv << "\n";
  }
  csv << split << "," << step << "," << epoch;
  for (size_t i = 3; i < kCsvColumns.size(); ++i) {
    csv << ",";
    auto it = m.find(kCsvColumns[i]);
    if (it != m.end()) csv << std::setprecision(9) << it->second;
  }
  csv << "\n";
  csv.flush();
  if (!csv) throw Error("cannot append to " + csv_ + ": " + std::strerror(errno));
}

}  // namespace hrm
