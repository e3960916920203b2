// Task codecs: puzzles parsed from what a person types, grids rendered back, and the checkers.
#include "test_util.h"

using namespace hrm;
using namespace hrm::data;
using hrm::test::error_of;

TEST(Task, SudokuSizeFollowsFromTheLength) {
  const TaskPuzzle p4 = parse_sudoku_puzzle("1.3..1.......2.4");
  EXPECT_EQ(p4.rows, 4);
  EXPECT_EQ(p4.tokens.size(), 16u);
  EXPECT_EQ(p4.tokens[0], 2);  // digit 1 -> token 2
  EXPECT_EQ(p4.tokens[1], 1);  // blank -> token 1
  EXPECT_EQ(parse_sudoku_puzzle(std::string(36, '.')).rows, 6);
  EXPECT_EQ(parse_sudoku_puzzle(std::string(81, '0')).rows, 9);
  const std::string e = error_of([] { parse_sudoku_puzzle(std::string(20, '.')); });
  EXPECT_NE(e.find("expected 16, 36 or 81 characters, got 20"), std::string::npos) << e;
  EXPECT_NE(error_of([] { parse_sudoku_puzzle(std::string(15, '.') + "x"); }), "");
}

TEST(Task, SudokuVerdictUsesTheChecker) {
  const std::string solution = "1234341221434321";
  std::string puzzle = solution;
  puzzle[0] = puzzle[5] = puzzle[10] = '.';
  const TaskPuzzle p = parse_sudoku_puzzle(puzzle);
  std::vector<int32_t> good, bad;
  for (char ch : solution) good.push_back(ch - '0' + 1);
  bad = good;
  std::swap(bad[0], bad[1]);
  EXPECT_NE(p.verdict(good).find("valid solution (checker accepts it); equals the unique solution"), std::string::npos);
  EXPECT_NE(p.verdict(bad).find("NOT a valid solution"), std::string::npos);
  EXPECT_TRUE(is_valid_solution(TaskKind::Sudoku, p.tokens.data(), good.data(), 16));
  EXPECT_FALSE(is_valid_solution(TaskKind::Sudoku, p.tokens.data(), bad.data(), 16));
  EXPECT_EQ(render_grid(TaskKind::Sudoku, p.tokens, 4, 4).substr(0, 10), "  . 2 3 4 ");
}

TEST(Task, MazeFromRowsOrOneLine) {
  const std::string rows = "S  \n # \n  G\n";
  const TaskPuzzle a = parse_maze_puzzle(rows, "m.txt"), b = parse_maze_puzzle("S   #   G", "line");
  EXPECT_EQ(a.rows, 3);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens[0], maze_token('S'));
  std::vector<int32_t> path = a.tokens;  // S o o / . # o / . . G: the top-right route, 4 moves (optimal)
  path[1] = path[2] = path[5] = maze_token('o');
  EXPECT_NE(a.verdict(path).find("optimal path"), std::string::npos);
  EXPECT_TRUE(is_valid_solution(TaskKind::Maze, a.tokens.data(), path.data(), 9));
  EXPECT_FALSE(is_valid_solution(TaskKind::Maze, a.tokens.data(), a.tokens.data(), 9));
  EXPECT_EQ(render_grid(TaskKind::Maze, path, 3, 3), "  S o o \n    # o \n      G \n");
  EXPECT_NE(error_of([] { parse_maze_puzzle("S #\n G", "bad.txt"); }).find("bad.txt: the maze must be square"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_maze_puzzle("S x# G   ", "x.txt"); }).find("x.txt: invalid character 'x'"),
            std::string::npos);
}

TEST(Task, ArcTaskTestInputsWithIdentifiers) {
  hrm::test::TempDir dir;
  const std::string path = dir.file("abc123.json");
  std::ofstream(path) << R"({"train": [], "test": [{"input": [[1, 2], [3, 4]], "output": [[4]]}]})";
  const std::vector<TaskPuzzle> ps = parse_arc_task(path, {"<blank>", "abc123"});
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].identifier, 1);
  EXPECT_TRUE(ps[0].note.empty());
  EXPECT_EQ(ps[0].tokens.size(), 900u);
  EXPECT_EQ(ps[0].tokens[0], 3);  // colour 1 -> token 3
  EXPECT_NE(parse_arc_task(path, {"<blank>"})[0].note.find("blank"), std::string::npos);
  std::vector<int32_t> answer(900, 0);
  answer[0] = 6;  // colour 4
  answer[1] = 1;  // EOS
  answer[30] = 1;
  EXPECT_NE(ps[0].verdict(answer).find("1x1, equals the expected output"), std::string::npos) << ps[0].verdict(answer);
  std::ofstream(dir.file("broken.json")) << "{\"test\": [";
  EXPECT_NE(error_of([&] { parse_arc_task(dir.file("broken.json"), {}); }).find("broken.json: invalid JSON"),
            std::string::npos);
}

TEST(Log, LevelsByName) {
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_NE(error_of([] { log::parse_level("loud"); }).find("unknown log level 'loud'"), std::string::npos);
  hrm::test::TempDir dir;
  const log::Level before = log::level();
  {
    log::FileSink sink(dir.file("x.log"));
    log::set_level(log::Level::warn);  // the console shows warnings; the file still keeps info lines
    log::debug("hidden");
    log::info("kept in the file");
    log::warn("shown");
  }
  log::info("after the sink");
  log::set_level(before);
  const std::string text = read_file(dir.file("x.log"));
  EXPECT_EQ(text.find("hidden"), std::string::npos);
  EXPECT_NE(text.find("[warning] shown"), std::string::npos) << text;
  EXPECT_NE(text.find("[info] kept in the file"), std::string::npos) << text;
  EXPECT_EQ(text.find("after the sink"), std::string::npos);
}

TEST(Task, ViolatingCellsAndGivens) {
  // 6x6 (2x3 boxes): a valid solution has no violation; swapping two digits within a row breaks two columns.
  const std::string solution = "123456456123231564564231312645645312";
  std::vector<int32_t> good;
  for (char ch : solution) good.push_back(ch - '0' + 1);
  const std::vector<bool> none = violating_cells(TaskKind::Sudoku, good, good);
  EXPECT_EQ(std::count(none.begin(), none.end(), true), 0);
  std::vector<int32_t> bad = good;
  std::swap(bad[0], bad[1]);  // row 0 and box 0 stay permutations; columns 0 and 1 now repeat digits
  const std::vector<bool> flagged = violating_cells(TaskKind::Sudoku, good, bad);
  EXPECT_TRUE(flagged[0] && flagged[1]);
  EXPECT_GT(std::count(flagged.begin(), flagged.end(), true), 2);
  EXPECT_TRUE(is_given(TaskKind::Sudoku, 2));
  EXPECT_FALSE(is_given(TaskKind::Sudoku, 1));  // a blank
  const TaskPuzzle m = parse_maze_puzzle("S #\n # \n  G", "m");
  std::vector<int32_t> path = m.tokens;
  path[4] = maze_token('o');  // through the wall in the middle
  EXPECT_TRUE(violating_cells(TaskKind::Maze, m.tokens, path)[4]);
  EXPECT_TRUE(is_given(TaskKind::Maze, maze_token('#')));
}
