#pragma once
// ARC (Abstraction and Reasoning Corpus): task readers for both published layouts, augmentation (dihedral x colour
// permutation, translation), the 30x30 token encoding and its exact inverses, and the dataset builder.
//
// Tokens: 0 PAD, 1 EOS (the row below and the column right of the grid), 2..11 colours 0..9; seq_len 900, vocab 12.
#include <cstdint>
#include <string>
#include <vector>

#include "hrm/data/format.h"  // DatasetSummary

namespace hrm::data {

constexpr int kArcMaxSize = 30;

struct ArcGrid {
  int rows = 0, cols = 0;
  std::vector<uint8_t> cells;  // row-major colours 0..9
  bool operator==(const ArcGrid& o) const { return rows == o.rows && cols == o.cols && cells == o.cells; }
};

struct ArcPair {
  ArcGrid input, output;
};

struct ArcTask {
  std::string id;
  std::string set;  // "training", "evaluation", "concept", ...
  std::vector<ArcPair> train, test;
};

// Parses a JSON grid (list of equal-length lists of 0..9, at most 30x30); errors name `where`.
ArcGrid parse_arc_grid(const std::string& json_text, const std::string& where);

// Grid -> JSON text (list of rows).
std::string arc_grid_to_json(const ArcGrid& g);

// A folder with per-task JSON files in training/ and evaluation/ subfolders (other subfolders: their own set name).
std::vector<ArcTask> read_arc_folder(const std::string& dir);
// Kaggle-style combined files PREFIX_<set>_challenges.json + PREFIX_<set>_solutions.json.
std::vector<ArcTask> read_arc_kaggle(const std::string& prefix, const std::string& set);

// An augmentation: dihedral transform `tid` then colour map (colour c -> colour_map[c], colour_map[0] == 0).
struct ArcAugment {
  int tid = 0;
  std::vector<uint8_t> colour_map = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  bool identity() const;
  std::string name(const std::string& task_id) const;  // "<task>_t<tid>_<c0..c9>", identity -> "<task>"
  // Parses a name made by name(); returns false for a plain task id (identity augment).
  static bool parse(const std::string& name, std::string* task_id, ArcAugment* augment);
  ArcGrid apply(const ArcGrid& g) const;
  ArcGrid invert(const ArcGrid& g) const;  // exact inverse of apply
};

// Grid -> 900 tokens, placed at (row_offset, col_offset), EOS after the last row and column.
std::vector<uint8_t> encode_arc_grid(const ArcGrid& g, int row_offset = 0, int col_offset = 0);
// 900 tokens -> the grid at the origin: columns up to the first non-colour token of row 0, rows while the row's
// first cells are colours. Empty grid when the first token is not a colour.
ArcGrid crop_arc_grid(const std::vector<uint8_t>& tokens);

struct ArcBuildOptions {
  std::string output_dir;
  std::string test_set = "evaluation";  // its tasks' test pairs form the test split; their demos go to train
  int64_t num_aug = 1000;
  int64_t retries_factor = 5;
  uint64_t seed = 42;
  bool translate = true;  // random offsets of demonstration pairs (all but one per task)
  bool overwrite = false;
  bool progress = true;
};

struct ArcSummary : DatasetSummary {
  int64_t tasks = 0, test_tasks = 0, identifiers = 0;
  std::vector<std::string> warnings;  // e.g. tasks of the test set also present in a training set
};

// Builds DIR/{train,test} + identifiers.json + test_puzzles.json (the test set's original tasks with solutions).
ArcSummary build_arc_dataset(const std::vector<ArcTask>& tasks, const ArcBuildOptions& options);

}  // namespace hrm::data
