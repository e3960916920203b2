// Sudoku and maze CSV files in the published layout, read strictly and with --skip-invalid.
#include "fuzz_input.h"
#include "hrm/data/maze.h"
#include "hrm/data/sudoku.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = hrm::fuzz::as_file(data, size, "puzzles.csv");
  for (bool skip : {false, true}) {
    int64_t skipped = 0;
    hrm::fuzz::expect_parse_or_error([&] { hrm::data::read_sudoku_csv(path, hrm::data::SudokuShape::of(9), skip); });
    hrm::fuzz::expect_parse_or_error([&] { hrm::data::read_maze_csv(path, skip, &skipped); });
  }
  return 0;
}
