#pragma once
// `hrm dataset sudoku|maze|arc`: import the published CSV/JSON files or generate puzzles offline, and write a dataset
// in the published format (data/README.md says what goes where).
#include <cstdint>
#include <string>
#include <vector>

namespace hrm::data {

struct DatasetRequest {
  std::string kind;  // "sudoku" | "maze" | "arc"
  std::string output_dir;
  bool overwrite = false, skip_invalid = false;
  uint64_t seed = 0;
  // Sudoku and Maze: import train_csv + test_csv, or generate `generate` + `generate_test` puzzles (and with
  // export_csv also write them as CSV: export_csv and export_csv with _test before .csv).
  std::string train_csv, test_csv, export_csv;
  int64_t generate = 0, generate_test = 0;
  // Sudoku
  int sudoku_size = 9;
  int64_t num_aug = 0, subsample = -1, min_difficulty = -1, min_rating = 0, min_blanks = -1, max_blanks = -1;
  // Maze
  int maze_size = 30;
  int64_t min_path_length = 110;
  bool maze_aug = false;
  // ARC: per-task folders and/or Kaggle-style combined files
  std::vector<std::string> arc_dirs;
  std::string kaggle_prefix, kaggle_sets = "training,evaluation,concept", test_set = "evaluation";
  int64_t arc_num_aug = 1000;
  uint64_t arc_seed = 42;
};

// Builds the dataset; returns what happened, one line each (sizes, generation statistics, warnings).
std::string build_dataset(const DatasetRequest& request);

}  // namespace hrm::data
