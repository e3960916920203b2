#include "hrm/data/task.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "hrm/data/arc.h"
#include "hrm/data/maze.h"
#include "hrm/data/sudoku.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "json_file.h"

namespace hrm::data {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {
int square_side(int64_t n) { return static_cast<int>(std::lround(std::sqrt(static_cast<double>(n)))); }

// Sudoku tokens: 0 PAD, 1 blank, 1 + d for digit d.
SudokuGrid sudoku_grid(const int32_t* tokens, int64_t n) {
  SudokuGrid g(static_cast<size_t>(n));
  for (int64_t c = 0; c < n; ++c) g[c] = static_cast<uint8_t>(std::clamp(tokens[c] - 1, 0, 255));
  return g;
}

std::string maze_text(const int32_t* tokens, int64_t n) {
  std::string s(static_cast<size_t>(n), '?');
  for (int64_t c = 0; c < n; ++c) s[c] = kMazeCells[std::clamp<int32_t>(tokens[c], 0, kMazeVocab - 1)];
  return s;
}
}  // namespace

std::string to_string(TaskKind kind) {
  switch (kind) {
    case TaskKind::Sudoku: return "sudoku";
    case TaskKind::Maze: return "maze";
    case TaskKind::Arc: return "arc";
    default: return "generic";
  }
}

TaskKind detect_task_kind(const std::string& dir, const DatasetMetadata& m) {
  if (fs::exists(dir + "/test_puzzles.json") && m.seq_len == kArcMaxSize * kArcMaxSize && m.vocab_size == 12)
    return TaskKind::Arc;
  const int side = square_side(m.seq_len);
  if (side * side == m.seq_len && (side == 4 || side == 6 || side == 9) && m.vocab_size == side + 2)
    return TaskKind::Sudoku;
  if (side * side == m.seq_len && m.vocab_size == kMazeVocab) return TaskKind::Maze;
  return TaskKind::Generic;
}

TaskPuzzle parse_sudoku_puzzle(const std::string& text) {
  const int side = square_side(static_cast<int64_t>(text.size()));
  check(side * side == static_cast<int>(text.size()) && (side == 4 || side == 6 || side == 9),
        "sudoku '" + text + "': expected 16, 36 or 81 characters, got " + std::to_string(text.size()));
  const SudokuShape shape = SudokuShape::of(side);
  const SudokuGrid q = parse_sudoku(shape, text, "sudoku '" + text + "'");
  TaskPuzzle p;
  p.kind = TaskKind::Sudoku;
  p.title = "sudoku " + text;
  p.rows = p.cols = side;
  for (auto v : q) p.tokens.push_back(v + 1);
  p.verdict = [shape, q](const std::vector<int32_t>& prediction) {
    const SudokuGrid g = sudoku_grid(prediction.data(), static_cast<int64_t>(prediction.size()));
    const bool ok = is_valid_sudoku_solution(shape, q, g);
    const SolveResult exact = solve_sudoku(shape, q, 2);
    return std::string(ok ? "valid solution (checker accepts it)" : "NOT a valid solution (checker rejects it)") +
           (exact.solutions == 1 && exact.solution == g ? "; equals the unique solution" : "");
  };
  return p;
}

TaskPuzzle parse_maze_puzzle(const std::string& text, const std::string& where) {
  std::string cells, line;
  int rows = 0;
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) {
      cells += line;
      ++rows;
    }
    start = end + 1;
  }
  const int side = rows == 1 ? square_side(static_cast<int64_t>(cells.size())) : rows;
  check(!cells.empty() && side * side == static_cast<int>(cells.size()), where + ": the maze must be square (" +
                                                                             std::to_string(rows) + " rows, " +
                                                                             std::to_string(cells.size()) + " cells)");
  TaskPuzzle p;
  p.kind = TaskKind::Maze;
  p.title = "maze " + where;
  p.rows = p.cols = side;
  for (char ch : cells) {
    const int32_t t = maze_token(ch);
    check(t > 0 && ch != 'o', where + ": invalid character '" + std::string(1, ch) + "' (expected '#', ' ', 'S', 'G')");
    p.tokens.push_back(t);
  }
  p.verdict = [side, cells](const std::vector<int32_t>& prediction) {
    const std::string g = maze_text(prediction.data(), static_cast<int64_t>(prediction.size()));
    return is_valid_maze_solution(side, cells, g) ? std::string("optimal path (checker accepts it)")
                                                  : std::string("NOT an optimal S-G path (checker rejects it)");
  };
  return p;
}

std::vector<TaskPuzzle> parse_arc_task(const std::string& path, const std::vector<std::string>& identifiers) {
  Json task = parse_json_file(path);
  check(task.is_object() && task.contains("test") && task["test"].is_array(),
        path + ": not an ARC task (no 'test' list)");
  const std::string id = fs::path(path).stem().string();
  const auto it = std::find(identifiers.begin(), identifiers.end(), id);
  const int32_t identifier = it == identifiers.end() ? 0 : static_cast<int32_t>(it - identifiers.begin());
  std::vector<TaskPuzzle> out;
  for (size_t k = 0; k < task["test"].size(); ++k) {
    const Json& pair = task["test"][k];
    check(pair.is_object() && pair.contains("input"), path + ": test " + std::to_string(k) + " has no 'input'");
    const ArcGrid in = parse_arc_grid(pair["input"].dump(), path + ": test input " + std::to_string(k));
    std::optional<ArcGrid> truth;
    if (pair.contains("output"))
      truth = parse_arc_grid(pair["output"].dump(), path + ": test output " + std::to_string(k));
    TaskPuzzle p;
    p.kind = TaskKind::Arc;
    p.title = "arc " + id + " test " + std::to_string(k);
    p.rows = p.cols = kArcMaxSize;
    p.identifier = identifier;
    if (identifier == 0) p.note = "task " + id + " has no puzzle identifier in the dataset: using the blank one";
    for (auto v : encode_arc_grid(in)) p.tokens.push_back(v);
    p.verdict = [truth](const std::vector<int32_t>& prediction) {
      std::vector<uint8_t> u(prediction.size());
      for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<uint8_t>(std::clamp(prediction[i], 0, 255));
      const ArcGrid g = crop_arc_grid(u);
      std::string v = "predicted grid " + std::to_string(g.rows) + "x" + std::to_string(g.cols);
      if (truth) v += *truth == g ? ", equals the expected output" : ", differs from the expected output";
      return v;
    };
    out.push_back(std::move(p));
  }
  return out;
}

std::string cell_text(TaskKind kind, int32_t t) {
  switch (kind) {
    case TaskKind::Sudoku: return t <= 0 ? "?" : t == 1 ? "." : std::to_string(t - 1);
    case TaskKind::Maze: return std::string(1, kMazeCells[std::clamp<int32_t>(t, 0, kMazeVocab - 1)]);
    case TaskKind::Arc: return t <= 0 ? " " : t == 1 ? "|" : t <= 11 ? std::to_string(t - 2) : "?";
    default: return std::to_string(t);
  }
}

std::string render_grid(TaskKind kind, const std::vector<int32_t>& tokens, int rows, int cols) {
  std::string out;
  for (int r = 0; r < rows; ++r) {
    std::string line;
    for (int c = 0; c < cols; ++c)
      line += cell_text(kind, tokens[static_cast<size_t>(r * cols + c)]) + (cols <= 12 ? " " : "");
    out += "  " + line + "\n";
  }
  return out;
}

std::vector<bool> violating_cells(TaskKind kind, const std::vector<int32_t>& input,
                                  const std::vector<int32_t>& prediction) {
  const int64_t n = static_cast<int64_t>(prediction.size());
  std::vector<bool> bad(prediction.size(), false);
  const int side = square_side(n);
  if (kind == TaskKind::Sudoku && (side == 4 || side == 6 || side == 9)) {
    const SudokuShape shape = SudokuShape::of(side);
    auto mark = [&](const std::vector<int>& cells) {  // repeated digits among these cells
      for (size_t a = 0; a < cells.size(); ++a)
        for (size_t b = a + 1; b < cells.size(); ++b)
          if (prediction[cells[a]] > 1 && prediction[cells[a]] == prediction[cells[b]])
            bad[cells[a]] = bad[cells[b]] = true;
    };
    for (int i = 0; i < side; ++i) {
      std::vector<int> row, col, box;
      for (int j = 0; j < side; ++j) {
        row.push_back(i * side + j);
        col.push_back(j * side + i);
        const int per_row = side / shape.box_cols;  // boxes side by side
        const int br = (i / per_row) * shape.box_rows, bc = (i % per_row) * shape.box_cols;
        box.push_back((br + j / shape.box_cols) * side + bc + j % shape.box_cols);
      }
      mark(row), mark(col), mark(box);
    }
  } else if (kind == TaskKind::Maze && input.size() == prediction.size()) {
    for (int64_t c = 0; c < n; ++c) bad[c] = prediction[c] == maze_token('o') && input[c] == maze_token('#');
  }
  return bad;
}

bool is_given(TaskKind kind, int32_t t) {
  if (kind == TaskKind::Sudoku) return t > 1;
  if (kind == TaskKind::Maze) return t == maze_token('#') || t == maze_token('S') || t == maze_token('G');
  return false;
}

bool has_checker(TaskKind kind) { return kind == TaskKind::Sudoku || kind == TaskKind::Maze; }

bool is_valid_solution(TaskKind kind, const int32_t* input, const int32_t* prediction, int64_t n) {
  const int side = square_side(n);
  if (kind == TaskKind::Sudoku) {
    if (side != 4 && side != 6 && side != 9) return false;
    SudokuGrid q(static_cast<size_t>(n));
    for (int64_t c = 0; c < n; ++c) q[c] = static_cast<uint8_t>(std::max(0, input[c] - 1));
    return is_valid_sudoku_solution(SudokuShape::of(side), q, sudoku_grid(prediction, n));
  }
  if (kind == TaskKind::Maze) {
    try {
      return is_valid_maze_solution(side, maze_text(input, n), maze_text(prediction, n));
    } catch (const Error&) {
      return false;  // e.g. the input has no S or G
    }
  }
  return false;
}

}  // namespace hrm::data
