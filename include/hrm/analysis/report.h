#pragma once
// `hrm report RUN_DIR`: one self-contained HTML page (inline SVG and an inline script; nothing fetched) with the
// training curves from metrics.jsonl against step and against training time, the evaluation points, the analyses
// in RUN_DIR/analysis/*.json, the config, the dataset summary and the hardware (run_info.json).
#include <string>

namespace hrm::analysis {

// The page for a run folder. Errors name the file that is missing or malformed.
std::string report_html(const std::string& run_dir);
// Writes it to `out_path` (default RUN_DIR/report.html) atomically; returns the path.
std::string write_report(const std::string& run_dir, const std::string& out_path = "");

// Plots keep at most this many points per series (evenly strided, the last one always kept).
constexpr size_t kMaxPlotPoints = 2000;

}  // namespace hrm::analysis
