#include "hrm/analysis/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::analysis {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

struct Series {
  std::string name;
  std::vector<double> x, y;
  bool points = false;  // dots (evaluations) rather than a line
};

// Evenly strided indices (at most kMaxPlotPoints, the last one kept).
std::vector<size_t> kept(size_t n) {
  std::vector<size_t> idx;
  const size_t stride = n > kMaxPlotPoints ? (n + kMaxPlotPoints - 1) / kMaxPlotPoints : 1;
  for (size_t i = 0; i < n; i += stride) idx.push_back(i);
  if (n && idx.back() != n - 1) idx.push_back(n - 1);
  return idx;
}

// A line/point plot as inline SVG. Every series element carries data-n (its number of points) and the points in
// data-x / data-y for the hover readout.
std::string plot(const std::string& title, const std::string& x_label, std::vector<Series> series) {
  series.erase(std::remove_if(series.begin(), series.end(), [](const Series& s) { return s.x.empty(); }), series.end());
  if (series.empty()) return "";
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : std::abs(y0) * 0.1);
  const double W = 440, H = 220, L = 52, R = 10, T = 10, B = 34;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
  static const char* colours[] = {"#1f6fb2", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#495057"};
  std::ostringstream o;
  o << "<figure class=\"plot\" data-series=\"" << series.size() << "\"><figcaption>" << escape(title)
    << "</figcaption><svg width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H
    << "\" data-x0=\"" << x0 << "\" data-x1=\"" << x1 << "\" data-y0=\"" << y0 << "\" data-y1=\"" << y1 << "\">"
    << "<rect class=\"frame\" x=\"" << L << "\" y=\"" << T << "\" width=\"" << W - L - R << "\" height=\"" << H - T - B
    << "\"/>";
  for (int k = 0; k <= 4; ++k) {  // y grid and labels
    const double y = y0 + (y1 - y0) * k / 4;
    o << "<line class=\"grid\" x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << py(y) << "\" y2=\"" << py(y)
      << "\"/><text class=\"tick\" x=\"" << L - 4 << "\" y=\"" << py(y) + 4 << "\" text-anchor=\"end\">" << num(y)
      << "</text>";
  }
  for (int k = 0; k <= 4; ++k) {
    const double x = x0 + (x1 - x0) * k / 4;
    o << "<text class=\"tick\" x=\"" << px(x) << "\" y=\"" << H - B + 14 << "\" text-anchor=\"middle\">" << num(x)
      << "</text>";
  }
  o << "<text class=\"label\" x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 4 << "\" text-anchor=\"middle\">"
    << escape(x_label) << "</text>";
  for (size_t si = 0; si < series.size(); ++si) {
    const Series& s = series[si];
    const char* colour = colours[si % 6];
    std::ostringstream xs, ys;
    for (size_t i = 0; i < s.x.size(); ++i) xs << (i ? "," : "") << s.x[i], ys << (i ? "," : "") << s.y[i];
    const std::string data = "data-name=\"" + escape(s.name) + "\" data-n=\"" + std::to_string(s.x.size()) +
                             "\" data-x=\"" + xs.str() + "\" data-y=\"" + ys.str() + "\"";
    if (s.points) {
      o << "<g class=\"series points\" " << data << " fill=\"" << colour << "\">";
      for (size_t i = 0; i < s.x.size(); ++i)
        o << "<circle cx=\"" << px(s.x[i]) << "\" cy=\"" << py(s.y[i]) << "\" r=\"3.5\"/>";
      o << "</g>";
    } else {
      o << "<polyline class=\"series line\" " << data << " stroke=\"" << colour << "\" points=\"";
      for (size_t i = 0; i < s.x.size(); ++i) o << (i ? " " : "") << px(s.x[i]) << "," << py(s.y[i]);
      o << "\"/>";
    }
  }
  o << "</svg><div class=\"legend\">";
  for (size_t si = 0; si < series.size(); ++si)
    o << "<span style=\"color:" << colours[si % 6] << "\">&#9632; " << escape(series[si].name) << "</span> ";
  o << "</div></figure>";
  return o.str();
}

std::vector<Json> read_jsonl(const std::string& path) {
  std::vector<Json> rows;
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path + " (is this a run folder?)");
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    try {
      rows.push_back(Json::parse(line));
    } catch (const Json::exception&) {
      // A torn last line of a killed run is skipped; anything else is an error.
      if (in.peek() != EOF) throw Error(path + ":" + std::to_string(n) + ": not a JSON object");
    }
  }
  return rows;
}

Json read_json_or_null(const std::string& path) {
  if (!fs::exists(path)) return nullptr;
  try {
    return Json::parse(read_file(path));
  } catch (const Json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

// The series of `key` in `rows` against `x_key` (strided beyond kMaxPlotPoints); non-finite values (null) are left out.
Series series_of(const std::vector<Json>& rows, const std::string& key, const std::string& x_key,
                 const std::string& name, bool points) {
  Series s{name, {}, {}, points};
  std::vector<std::pair<double, double>> all;
  for (const auto& r : rows)
    if (r.contains(key) && r[key].is_number() && r.contains(x_key) && r[x_key].is_number())
      all.emplace_back(r[x_key].get<double>(), r[key].get<double>());
  for (size_t i : kept(all.size())) s.x.push_back(all[i].first), s.y.push_back(all[i].second);
  return s;
}

std::string table(const Json& object) {
  std::ostringstream o;
  o << "<table class=\"kv\">";
  for (auto it = object.begin(); it != object.end(); ++it)
    o << "<tr><th>" << escape(it.key()) << "</th><td>"
      << escape(it.value().is_string() ? it.value().get<std::string>() : it.value().dump()) << "</td></tr>";
  return o.str() + "</table>";
}

std::string analyses(const std::string& dir) {
  std::ostringstream o;
  const Json res = read_json_or_null(dir + "/residuals.json");
  if (!res.is_null()) {
    std::vector<Series> s;
    for (const char* state : {"z_H", "z_L"}) {
      Series line{std::string("residual of ") + state, {}, {}, false};
      for (const auto& seg : res.value(state, Json::array()))
        for (const auto& v : seg)
          line.x.push_back(static_cast<double>(line.x.size())), line.y.push_back(v.get<double>());
      if (!line.x.empty()) s.push_back(line);
    }
    o << "<h3>Forward residuals (paper Fig. 3)</h3><p>||z<sub>t</sub> - z<sub>t-1</sub>|| / ||z<sub>t-1</sub>||, "
         "averaged over a test batch of "
      << res.value("batch_size", 0) << ", every update of every segment in order.</p>"
      << plot("forward residual per update", "update (all segments in order)", s);
  }
  const Json pr = read_json_or_null(dir + "/pr.json");
  if (!pr.is_null()) {
    Series trained{"trained: z_H, z_L", {}, {}, true}, untrained{"untrained: z_H, z_L", {}, {}, true};
    trained.x = {0}, trained.y = {pr.value("pr_z_H", 0.0)};
    untrained.x = {0}, untrained.y = {pr.value("untrained_pr_z_H", 0.0)};
    if (pr["pr_z_L"].is_number()) {
      trained.x.push_back(1), trained.y.push_back(pr["pr_z_L"].get<double>());
      untrained.x.push_back(1), untrained.y.push_back(pr["untrained_pr_z_L"].get<double>());
    }
    Series curve_H{"z_H", {}, {}, false}, curve_L{"z_L", {}, {}, false};
    for (const auto& p : pr.value("pr_vs_trajectories", Json::array())) {
      curve_H.x.push_back(p["trajectories"].get<double>()), curve_H.y.push_back(p["pr_z_H"].get<double>());
      if (p["pr_z_L"].is_number())
        curve_L.x.push_back(p["trajectories"].get<double>()), curve_L.y.push_back(p["pr_z_L"].get<double>());
    }
    o << "<h3>Participation ratio (paper Fig. 8)</h3>"
      << table(Json{{"pr_z_H", pr["pr_z_H"]},
                    {"pr_z_L", pr["pr_z_L"]},
                    {"untrained_pr_z_H", pr["untrained_pr_z_H"]},
                    {"untrained_pr_z_L", pr["untrained_pr_z_L"]},
                    {"trajectories", pr["trajectories"]}})
      << plot("participation ratio (x: 0 = z_H, 1 = z_L)", "state", {trained, untrained})
      << plot("participation ratio against trajectories", "trajectories", {curve_H, curve_L});
  }
  const Json sc = read_json_or_null(dir + "/scaling.json");
  if (!sc.is_null()) {
    Series exact{"exact accuracy", {}, {}, false};
    const auto m = sc.value("halt_max_steps", Json::array()), e = sc.value("exact_accuracy", Json::array());
    for (size_t i = 0; i < m.size() && i < e.size(); ++i)
      exact.x.push_back(m[i].get<double>()), exact.y.push_back(e[i].get<double>());
    o << "<h3>Inference-time scaling (paper Fig. 5c)</h3>"
      << plot("exact accuracy against halt_max_steps at evaluation", "halt_max_steps", {exact});
  }
  return o.str();
}

const char* kStyle =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}h1{font-size:20px}"
    "h2{font-size:17px;border-bottom:1px solid #ddd;margin-top:28px}h3{font-size:15px}"
    ".plots{display:flex;flex-wrap:wrap;gap:8px}figure.plot{margin:4px;border:1px solid #eee;padding:4px}"
    "figcaption{font-weight:600;font-size:13px}svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}"
    "svg .tick,svg .label{font-size:10px;fill:#555}polyline.series{fill:none;stroke-width:1.5}"
    ".legend{font-size:12px}table.kv{border-collapse:collapse;font-size:13px}table.kv th{text-align:left;"
    "padding:2px 12px 2px 0;font-weight:500;color:#555}pre{background:#f6f6f6;padding:8px;font-size:12px}"
    "#tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:2px 6px;"
    "border-radius:3px;display:none}";

// Hover readout: the nearest point of the nearest series. The last line marks the page as scripted without error.
const char* kScript =
    "window.onerror=function(m){document.body.dataset.errors=(document.body.dataset.errors||'')+m+';'};"
    "(function(){var tip=document.getElementById('tip');"
    "document.querySelectorAll('figure.plot svg').forEach(function(svg){"
    "var series=[].map.call(svg.querySelectorAll('.series'),function(s){return{name:s.dataset.name,"
    "x:s.dataset.x.split(',').map(Number),y:s.dataset.y.split(',').map(Number)}});"
    "var x0=+svg.dataset.x0,x1=+svg.dataset.x1;"
    "svg.addEventListener('mousemove',function(e){var r=svg.getBoundingClientRect();"
    "var x=x0+(e.clientX-r.left-52)/(r.width-62)*(x1-x0),best=null;"
    "series.forEach(function(s){s.x.forEach(function(v,i){var d=Math.abs(v-x);"
    "if(!best||d<best.d)best={d:d,s:s.name,x:v,y:s.y[i]}})});"
    "if(best){tip.style.display='block';tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';"
    "tip.textContent=best.s+': '+best.y.toPrecision(4)+' at '+best.x.toPrecision(5)}});"
    "svg.addEventListener('mouseleave',function(){tip.style.display='none'})});"
    "document.body.dataset.ready='1'})();";

}  // namespace

std::string report_html(const std::string& run_dir) {
  const std::vector<Json> rows = read_jsonl(run_dir + "/metrics.jsonl");
  std::vector<Json> train, eval;
  for (const auto& r : rows) (r.value("split", "") == "eval" ? eval : train).push_back(r);
  const std::string config = fs::exists(run_dir + "/config.yaml") ? read_file(run_dir + "/config.yaml") : "";
  const Json info = read_json_or_null(run_dir + "/run_info.json");

  std::ostringstream o;
  o << "<!doctype html><html><head><meta charset=\"utf-8\"><title>hrm report: " << escape(run_dir) << "</title><style>"
    << kStyle << "</style></head><body><div id=\"tip\"></div><h1>hrm run " << escape(run_dir) << "</h1>";
  Json summary = Json::object();
  summary["training steps logged"] = train.size();
  if (!train.empty()) summary["last step"] = train.back().value("step", 0);
  if (!train.empty() && train.back().contains("elapsed_s")) summary["training time (s)"] = train.back()["elapsed_s"];
  if (!eval.empty())
    for (const char* k : {"exact_accuracy", "accuracy", "q_halt_accuracy", "steps", "valid_solutions"})
      if (eval.back().contains(k)) summary[std::string("last eval ") + k] = eval.back()[k];
  o << "<h2>Summary</h2>" << table(summary);

  // The curves: every metric against step and against training time; evaluations as points.
  const std::vector<std::pair<const char*, const char*>> metrics = {{"lm_loss", "lm loss"},
                                                                    {"q_halt_loss", "Q-halt loss"},
                                                                    {"q_continue_loss", "Q-continue loss"},
                                                                    {"accuracy", "token accuracy"},
                                                                    {"exact_accuracy", "exact accuracy"},
                                                                    {"q_halt_accuracy", "Q-halt accuracy"},
                                                                    {"steps", "mean segments"},
                                                                    {"valid_solutions", "checker-valid solutions"},
                                                                    {"lr", "learning rate"},
                                                                    {"samples_per_s", "samples/s"}};
  for (const auto& [x_key, x_name] :
       std::vector<std::pair<const char*, const char*>>{{"step", "step"}, {"elapsed_s", "training time (s)"}}) {
    std::ostringstream plots;
    for (const auto& [key, name] : metrics)
      plots << plot(std::string(name) + " against " + x_name, x_name,
                    {series_of(train, key, x_key, "train", false), series_of(eval, key, x_key, "eval", true)});
    if (!plots.str().empty())
      o << "<h2>Training curves against " << x_name << "</h2><div class=\"plots\">" << plots.str() << "</div>";
  }
  const std::string analysis = analyses(run_dir + "/analysis");
  if (!analysis.empty()) o << "<h2>Analyses</h2><div class=\"analyses\">" << analysis << "</div>";

  o << "<h2>Config</h2><pre>" << escape(config) << "</pre>";
  if (info.is_object()) {
    if (info.contains("dataset")) o << "<h2>Dataset</h2>" << table(info["dataset"]);
    if (info.contains("hardware")) o << "<h2>Hardware</h2>" << table(info["hardware"]);
  }
  o << "<script>" << kScript << "</script></body></html>\n";
  return o.str();
}

std::string write_report(const std::string& run_dir, const std::string& out_path) {
  const std::string path = out_path.empty() ? run_dir + "/report.html" : out_path;
  write_file_atomic(path, report_html(run_dir));
  return path;
}

}  // namespace hrm::analysis
