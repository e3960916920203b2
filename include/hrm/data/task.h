#pragma once
// The tasks a dataset can hold (Sudoku, Maze, ARC, or generic tokens) and their codecs: a puzzle parsed from the
// text a person writes, tokens rendered back as a grid, and the checker's verdict on a prediction. Used by
// evaluation (checker metrics), `hrm solve` and the CLI.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hrm/data/format.h"

namespace hrm::data {

enum class TaskKind { Sudoku, Maze, Arc, Generic };
std::string to_string(TaskKind kind);

// From the dataset's shape: ARC has test_puzzles.json, seq_len 900 and vocab 12; Sudoku: seq_len n^2 and vocab n+2
// for n in {4, 6, 9}; Maze: vocab 6 on a square grid; anything else is generic.
TaskKind detect_task_kind(const std::string& dataset_dir, const DatasetMetadata& metadata);

// One puzzle as the model reads it and as a person reads it.
struct TaskPuzzle {
  TaskKind kind = TaskKind::Generic;
  std::string title;
  std::vector<int32_t> tokens;  // the model's input, seq_len tokens
  int rows = 0, cols = 0;       // how the tokens form a grid
  int32_t identifier = 0;       // puzzle identifier (0 = blank)
  std::string note;             // e.g. why the blank identifier is used
  // What the task's checker says of a predicted token sequence.
  std::function<std::string(const std::vector<int32_t>& prediction)> verdict;
};

// A Sudoku of 16, 36 or 81 characters ('.' or '0' blank); the size follows from the length.
TaskPuzzle parse_sudoku_puzzle(const std::string& text);
// A maze: one row per line ('#' wall, ' ' open, 'S', 'G'), or one line of size^2 characters; `where` names it.
TaskPuzzle parse_maze_puzzle(const std::string& text, const std::string& where);
// The test inputs of an ARC task file; its puzzle identifier is looked up by the file's stem in `identifiers`
// (a dataset's identifiers.json list), else the blank one (with a note).
std::vector<TaskPuzzle> parse_arc_task(const std::string& task_json_path, const std::vector<std::string>& identifiers);

// The text of one cell (token) of a task's grid, and a whole grid, one line per row.
std::string cell_text(TaskKind kind, int32_t token);
std::string render_grid(TaskKind kind, const std::vector<int32_t>& tokens, int rows, int cols);

// Cells of a predicted grid that break the task's rules: Sudoku digits repeated in a row, column or box; maze path
// cells on a wall of the puzzle `input`. Empty for other kinds.
std::vector<bool> violating_cells(TaskKind kind, const std::vector<int32_t>& input,
                                  const std::vector<int32_t>& prediction);
// Whether an input token is given by the puzzle (a Sudoku clue; a maze wall, S or G).
bool is_given(TaskKind kind, int32_t input_token);

// The checker: whether `prediction` solves the puzzle `input` (token sequences of length seq_len). Sudoku and Maze
// only (for other kinds there is no checker and this returns false).
bool has_checker(TaskKind kind);
bool is_valid_solution(TaskKind kind, const int32_t* input, const int32_t* prediction, int64_t seq_len);

}  // namespace hrm::data
