// The puzzles `hrm solve` takes as text: --sudoku STRING and --maze FILE.
#include "fuzz_input.h"
#include "hrm/data/task.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::parse_sudoku_puzzle(text); });
  hrm::fuzz::expect_parse_or_error([&] { hrm::data::parse_maze_puzzle(text, "maze.txt"); });
  return 0;
}
