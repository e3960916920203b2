#pragma once
// Sudoku: solver (counting, rating), checker, generator and augmentation for 4x4, 6x6 and 9x9 boards,
// and the builders of the published Sudoku-Extreme dataset layout.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "hrm/data/format.h"  // DatasetSummary

namespace hrm::data {

// A board: size x size cells, row-major, 0 = blank, 1..size digits.
struct SudokuShape {
  int size = 9, box_rows = 3, box_cols = 3;
  static SudokuShape of(int size);  // 4 -> 2x2 boxes, 6 -> 2x3, 9 -> 3x3
  int cells() const { return size * size; }
};
using SudokuGrid = std::vector<uint8_t>;

struct SolveResult {
  int solutions = 0;    // up to the requested limit
  int64_t guesses = 0;  // branching decisions (a value tried at a cell with more than one candidate)
  SudokuGrid solution;  // the first solution found
};

// DPLL-style search: propagate naked and hidden singles, branch on the cell with the fewest candidates.
SolveResult solve_sudoku(const SudokuShape& shape, const SudokuGrid& puzzle, int max_solutions = 2);

// True iff `solution` is complete, satisfies every row/column/box constraint and agrees with the clues of `puzzle`.
bool is_valid_sudoku_solution(const SudokuShape& shape, const SudokuGrid& puzzle, const SudokuGrid& solution);

SudokuGrid random_full_sudoku(const SudokuShape& shape, std::mt19937_64& rng);

struct GeneratedSudoku {
  SudokuGrid puzzle, solution;
  int64_t rating = 0;  // guesses to solve and prove uniqueness
};
// Removes clues from a random full grid in random order while the solution stays unique: down to a minimal puzzle,
// or until `target_blanks` cells are blank (when >= 0 and reachable).
GeneratedSudoku generate_sudoku(const SudokuShape& shape, std::mt19937_64& rng, int target_blanks = -1);

// Validity-preserving shuffle: digit permutation, band/stack permutations, row-in-band and column-in-stack
// permutations, and (square boxes only) an optional transpose. The same transform applies to puzzle and solution.
struct SudokuTransform {
  std::vector<int> digit_map;  // size+1 entries, digit_map[0] == 0
  std::vector<int> row_perm, col_perm;
  bool transpose = false;
  static SudokuTransform random(const SudokuShape& shape, std::mt19937_64& rng);
  SudokuGrid apply(const SudokuShape& shape, const SudokuGrid& grid) const;
};

// Text <-> grid: '.' or '0' blank, '1'..'9' digits. Throws hrm::Error with `where` on bad length or characters.
SudokuGrid parse_sudoku(const SudokuShape& shape, const std::string& text, const std::string& where);
std::string format_sudoku(const SudokuGrid& grid, char blank = '.');
std::string pretty_sudoku(const SudokuShape& shape, const SudokuGrid& grid);  // with box separators

// A canonical key under the augmentation group: all band/row/stack/column permutations and transposes with digits
// relabelled by first appearance (exact for 4x4 and 6x6); for 9x9, where the group has 3.4M structural elements,
// the digit relabelling only (independently generated 9x9 puzzles coincide with negligible probability).
std::string sudoku_canonical_key(const SudokuShape& shape, const SudokuGrid& puzzle);

struct SudokuRecord {
  std::string source;
  SudokuGrid question, answer;
  int64_t rating = 0;
};
// Published CSV layout: header `source,question,answer,rating`. Malformed rows throw (file and line) or, with
// skip_invalid, are counted in *skipped. An answer that contradicts its clues or breaks a constraint is invalid.
std::vector<SudokuRecord> read_sudoku_csv(const std::string& path, const SudokuShape& shape, bool skip_invalid,
                                          int64_t* skipped = nullptr);
void write_sudoku_csv(const std::string& path, const std::vector<SudokuRecord>& records);  // atomic

// Generates n_train + n_test distinct puzzles rated >= min_rating, such that no test puzzle is equivalent (by
// sudoku_canonical_key) to a train puzzle or to another test puzzle. Throws when the rating cannot be reached.
struct SudokuGenerateOptions {
  int64_t min_rating = 0;
  int64_t min_blanks = -1, max_blanks = -1;  // blanks drawn uniformly in [min, max]; -1: minimal puzzles
  uint64_t seed = 0;
  bool progress = true;
};
void generate_sudoku_split(const SudokuShape& shape, int64_t n_train, int64_t n_test,
                           const SudokuGenerateOptions& options, std::vector<SudokuRecord>* train,
                           std::vector<SudokuRecord>* test);

struct SudokuBuildOptions {
  std::string output_dir;
  int64_t num_aug = 0;          // augmented copies per training puzzle
  int64_t subsample_size = -1;  // keep this many training puzzles (random), -1 = all
  int64_t min_difficulty = -1;  // keep rows with rating >= this, -1 = all
  uint64_t seed = 0;
  bool overwrite = false;
};
// Tokens: 0 PAD, 1 + digit (blank = 1); vocab size+2; seq_len size^2; each puzzle and its augmentations = a group.
DatasetSummary build_sudoku_dataset(const SudokuShape& shape, std::vector<SudokuRecord> train,
                                    std::vector<SudokuRecord> test, const SudokuBuildOptions& options);

}  // namespace hrm::data
