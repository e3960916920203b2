#pragma once
// Solving one puzzle with a trained model, segment by segment (the paper's Fig. 7 trace).
#include <string>
#include <vector>

#include "hrm/model/hrm.h"

namespace hrm {

struct SolveSegment {
  std::vector<int32_t> prediction;  // argmax tokens after this segment
  double q_halt = 0, q_continue = 0;
};

struct SolveTrace {
  std::vector<SolveSegment> segments;  // all halt_max_steps segments
  int64_t halt_segment = 0;            // 1-based: the first segment whose Q head says halt (else the last)
  bool q_halted = false;               // the Q head said halt (rather than halt_max_steps being reached)
  const SolveSegment& answer() const { return segments[static_cast<size_t>(halt_segment - 1)]; }
};

SolveTrace solve_with_trace(HRM& model, const std::vector<int32_t>& input_tokens, int32_t puzzle_identifier = 0);

// A self-contained HTML page showing the grid after every segment (cells that change are highlighted).
std::string trace_html(const SolveTrace& trace, int rows, int cols, const std::string& title,
                       const std::string& (*cell_text)(int32_t token));

}  // namespace hrm
