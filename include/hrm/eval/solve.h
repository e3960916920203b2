#pragma once
// Solving puzzles with a trained model, segment by segment (the paper's Fig. 7 trace), and `hrm solve`.
#include <string>
#include <vector>

#include "hrm/data/task.h"
#include "hrm/model/act.h"

namespace hrm {

struct SolveSegment {
  std::vector<int32_t> prediction;  // argmax tokens after this segment
  double q_halt = 0, q_continue = 0;
};

struct SolveTrace {
  std::vector<SolveSegment> segments;  // every segment run (halt_max_steps unless the model halts at evaluation)
  int64_t halt_segment = 0;            // 1-based: the first segment whose Q head says halt (else the last)
  bool q_halted = false;               // the Q head said halt (rather than halt_max_steps being reached)
  const SolveSegment& answer() const { return segments[static_cast<size_t>(halt_segment - 1)]; }
};

SolveTrace solve_with_trace(ACTModel& model, const std::vector<int32_t>& input_tokens, int32_t puzzle_identifier = 0);

// A self-contained HTML page showing the grid after every segment (cells that change are highlighted).
std::string trace_html(const SolveTrace& trace, const data::TaskPuzzle& puzzle);

// `hrm solve`: one of sudoku (the puzzle text), maze_path (a maze file) or arc_path (an ARC task file).
struct SolveRequest {
  std::string checkpoint, data_dir, device = "auto", weights = "auto";
  std::vector<std::string> overrides;
  std::string sudoku, maze_path, arc_path;
  bool trace = false;     // every segment's grid in the report
  std::string html_path;  // also write the traces as one HTML page
};
// Returns the report: per puzzle its input, (with trace) every segment, the answer and the checker's verdict.
std::string solve(const SolveRequest& request);

}  // namespace hrm
