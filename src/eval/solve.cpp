#include "hrm/eval/solve.h"

#include <sstream>

#include "hrm/util/error.h"

namespace hrm {

SolveTrace solve_with_trace(HRM& model, const std::vector<int32_t>& input_tokens, int32_t puzzle_identifier) {
  const ModelConfig& c = model->config();
  check(static_cast<int64_t>(input_tokens.size()) == c.seq_len,
        "solve: the puzzle has " + std::to_string(input_tokens.size()) + " cells, the model expects " +
            std::to_string(c.seq_len));
  for (auto t : input_tokens)
    check(t >= 0 && t < c.vocab_size, "solve: token " + std::to_string(t) + " outside the model's vocabulary");
  model->eval();
  torch::NoGradGuard no_grad;
  const auto dev = model->device();
  const Batch batch{torch::tensor(input_tokens, torch::kInt).view({1, -1}).to(dev),
                    torch::full({1, c.seq_len}, -100, torch::kInt).to(dev),
                    torch::tensor({puzzle_identifier}, torch::kInt).to(dev)};
  Carry carry = model->initial_carry(batch);
  SolveTrace trace;
  for (int64_t s = 0; s < c.halt_max_steps; ++s) {
    auto [next, out] = model->forward(carry, batch);
    carry = std::move(next);
    SolveSegment seg;
    const torch::Tensor p = out.logits.argmax(-1).to(torch::kInt).cpu().view({-1});
    seg.prediction.assign(p.data_ptr<int32_t>(), p.data_ptr<int32_t>() + p.numel());
    seg.q_halt = out.q_halt_logits.item<double>();
    seg.q_continue = out.q_continue_logits.item<double>();
    const bool halt = c.no_ACT_continue ? seg.q_halt > 0 : seg.q_halt > seg.q_continue;
    if (halt && trace.halt_segment == 0) {
      trace.halt_segment = s + 1;
      trace.q_halted = true;
    }
    trace.segments.push_back(std::move(seg));
  }
  if (trace.halt_segment == 0) trace.halt_segment = c.halt_max_steps;
  return trace;
}

std::string trace_html(const SolveTrace& trace, int rows, int cols, const std::string& title,
                       const std::string& (*cell_text)(int32_t token)) {
  std::ostringstream h;
  h << "<!doctype html><meta charset=utf-8><title>" << title << "</title><style>"
    << "body{font-family:sans-serif}table{border-collapse:collapse;margin:4px}td{width:18px;height:18px;"
    << "text-align:center;border:1px solid #ccc;font:12px monospace}td.c{background:#fd8}"
    << ".seg{display:inline-block;vertical-align:top;margin:8px}</style><h3>" << title << "</h3>";
  for (size_t s = 0; s < trace.segments.size(); ++s) {
    const auto& seg = trace.segments[s];
    h << "<div class=seg>segment " << s + 1 << (static_cast<int64_t>(s + 1) == trace.halt_segment ? " (halt)" : "")
      << "<br>q_halt " << seg.q_halt << "<table>";
    for (int r = 0; r < rows; ++r) {
      h << "<tr>";
      for (int c = 0; c < cols; ++c) {
        const int32_t t = seg.prediction[static_cast<size_t>(r * cols + c)];
        const bool changed = s > 0 && trace.segments[s - 1].prediction[static_cast<size_t>(r * cols + c)] != t;
        h << "<td" << (changed ? " class=c" : "") << ">" << cell_text(t) << "</td>";
      }
      h << "</tr>";
    }
    h << "</table></div>";
  }
  return h.str();
}

}  // namespace hrm
