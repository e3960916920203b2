#include "hrm/eval/solve.h"

#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "hrm/eval/inference.h"
#include "hrm/util/device.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm {

SolveTrace solve_with_trace(ACTModel& model, const std::vector<int32_t>& input_tokens, int32_t puzzle_identifier) {
  const ModelConfig& c = model->config();
  check(static_cast<int64_t>(input_tokens.size()) == c.seq_len,
        "solve: the puzzle has " + std::to_string(input_tokens.size()) + " cells, the model expects " +
            std::to_string(c.seq_len));
  for (auto t : input_tokens)
    check(t >= 0 && t < c.vocab_size, "solve: token " + std::to_string(t) + " outside the model's vocabulary");
  check(puzzle_identifier >= 0 && puzzle_identifier < c.num_puzzle_identifiers,
        "solve: puzzle identifier " + std::to_string(puzzle_identifier) + " outside the model's " +
            std::to_string(c.num_puzzle_identifiers));
  model->eval();
  torch::NoGradGuard no_grad;
  const auto dev = model->device();
  const Batch batch{torch::tensor(input_tokens, torch::kInt).view({1, -1}).to(dev),
                    torch::full({1, c.seq_len}, kIgnoreLabel, torch::kInt).to(dev),
                    torch::tensor({puzzle_identifier}, torch::kInt).to(dev)};
  const HaltingPolicy policy = model->inner->halting();
  SolveTrace trace;
  run_to_halt(model, batch, [&](int64_t s, const Carry&, const ACTOutputs& out) {
    SolveSegment seg;
    const torch::Tensor p = out.logits.argmax(-1).to(torch::kInt).cpu().view({-1});
    seg.prediction.assign(p.data_ptr<int32_t>(), p.data_ptr<int32_t>() + p.numel());
    seg.q_halt = out.q_halt_logits.item<double>();
    seg.q_continue = out.q_continue_logits.item<double>();
    if (policy.halts(seg.q_halt, seg.q_continue) && trace.halt_segment == 0) {
      trace.halt_segment = s + 1;
      trace.q_halted = true;
    }
    trace.segments.push_back(std::move(seg));
  });
  if (trace.halt_segment == 0) trace.halt_segment = static_cast<int64_t>(trace.segments.size());
  return trace;
}

std::string trace_html(const SolveTrace& trace, const data::TaskPuzzle& puzzle) {
  // The report's page style: givens bold, rule violations red, cells changed since the previous segment shaded,
  // the maze path green, ARC colours as ARC draws them.
  static const char* arc[] = {"#000", "#0074d9", "#ff4136", "#2ecc40", "#ffdc00",
                              "#aaa", "#f012be", "#ff851b", "#7fdbff", "#870c25"};
  std::ostringstream h;
  h << "<!doctype html><meta charset=utf-8><title>" << puzzle.title << "</title><style>"
    << "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:4px}"
    << "td{width:20px;height:20px;text-align:center;border:1px solid #ccc;font:12px monospace}"
    << "td.g{font-weight:700}td.c{background:#ffe8a8}td.v{color:#fff;background:#e03131}td.p{background:#b2f2bb}"
    << ".seg{display:inline-block;vertical-align:top;margin:8px;font-size:13px}</style><h3>" << puzzle.title
    << "</h3><p>bold: given; shaded: changed since the previous segment; red: breaks a rule</p>";
  const int rows = puzzle.rows, cols = puzzle.cols;
  for (size_t s = 0; s < trace.segments.size(); ++s) {
    const auto& seg = trace.segments[s];
    const std::vector<bool> bad = data::violating_cells(puzzle.kind, puzzle.tokens, seg.prediction);
    h << "<div class=seg>segment " << s + 1 << (static_cast<int64_t>(s + 1) == trace.halt_segment ? " (halt)" : "")
      << "<br>q_halt " << seg.q_halt << "<table>";
    for (int r = 0; r < rows; ++r) {
      h << "<tr>";
      for (int c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>(r * cols + c);
        const int32_t t = seg.prediction[i];
        std::string cls;
        if (data::is_given(puzzle.kind, puzzle.tokens[i])) cls += " g";
        if (s > 0 && trace.segments[s - 1].prediction[i] != t) cls += " c";
        if (!bad.empty() && bad[i]) cls += " v";
        if (puzzle.kind == data::TaskKind::Maze && data::cell_text(puzzle.kind, t) == "o") cls += " p";
        h << "<td" << (cls.empty() ? "" : " class=\"" + cls.substr(1) + "\"");
        if (puzzle.kind == data::TaskKind::Arc && t >= 2 && t <= 11) h << " style=\"background:" << arc[t - 2] << "\"";
        h << ">" << (puzzle.kind == data::TaskKind::Arc ? "" : data::cell_text(puzzle.kind, t)) << "</td>";
      }
      h << "</tr>";
    }
    h << "</table></div>";
  }
  return h.str();
}

namespace {
std::vector<data::TaskPuzzle> requested_puzzles(const SolveRequest& r, const std::string& data_path) {
  const int given = !r.sudoku.empty() + !r.maze_path.empty() + !r.arc_path.empty();
  check(given == 1, "solve: give one of --sudoku, --maze or --arc");
  if (!r.sudoku.empty()) return {data::parse_sudoku_puzzle(r.sudoku)};
  if (!r.maze_path.empty()) return {data::parse_maze_puzzle(read_file(r.maze_path), r.maze_path)};
  return data::parse_arc_task(r.arc_path, data::read_identifiers(data_path + "/identifiers.json"));
}

std::string format_q(const char* fmt, double a, double b) {
  char buf[96];
  std::snprintf(buf, sizeof buf, fmt, a, b);
  return buf;
}
}  // namespace

std::string solve(const SolveRequest& r) {
  InferenceSetup s = load_for_inference(r.checkpoint, r.data_dir, "", r.overrides, resolve_device(r.device), r.weights);
  std::ostringstream out;
  std::string page;
  for (const data::TaskPuzzle& p : requested_puzzles(r, s.data_path)) {
    if (!p.note.empty()) out << "note: " << p.note << "\n";
    const SolveTrace tr = solve_with_trace(s.model, p.tokens, p.identifier);
    out << p.title << "\ninput:\n" << data::render_grid(p.kind, p.tokens, p.rows, p.cols);
    if (r.trace)
      for (size_t k = 0; k < tr.segments.size(); ++k)
        out << "segment " << k + 1
            << format_q(" (q_halt %.3f, q_continue %.3f)", tr.segments[k].q_halt, tr.segments[k].q_continue)
            << (static_cast<int64_t>(k + 1) == tr.halt_segment ? " <- halts" : "") << ":\n"
            << data::render_grid(p.kind, tr.segments[k].prediction, p.rows, p.cols);
    out << "answer after " << tr.halt_segment << " of " << tr.segments.size() << " segments ("
        << (tr.q_halted ? "the Q head halts there" : "halt_max_steps reached") << "):\n"
        << data::render_grid(p.kind, tr.answer().prediction, p.rows, p.cols) << p.verdict(tr.answer().prediction)
        << "\n";
    if (!r.html_path.empty()) page += trace_html(tr, p);
  }
  if (!r.html_path.empty()) write_file_atomic(r.html_path, page);
  return out.str();
}

}  // namespace hrm
