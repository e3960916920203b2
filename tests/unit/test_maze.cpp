#include <filesystem>

#include "test_util.h"

using namespace hrm::data;

TEST(Maze, SharedSampleImportsAndAugmentationsStayOptimal) {
  const std::string sample = hrm::test::shared_dir() + "/data/maze/dfs_carved_30x30_sample.csv";
  if (!std::filesystem::exists(sample)) GTEST_SKIP() << "no shared maze sample";
  const auto mazes = read_maze_csv(sample, false);
  ASSERT_EQ(mazes.size(), 24u);
  for (const auto& m : mazes) {
    EXPECT_EQ(maze_shortest_path(30, m.question), m.rating);
    for (int t = 0; t < 8; ++t) {
      const std::string q = dihedral_transform_string(m.question, 30, t),
                        a = dihedral_transform_string(m.answer, 30, t);
      EXPECT_TRUE(is_valid_maze_solution(30, q, a)) << t;
      EXPECT_EQ(dihedral_transform_string(q, 30, dihedral_inverse(t)), m.question);
    }
  }
}

TEST(Maze, CheckerRejectsWrongPaths) {
  std::mt19937_64 rng(3);
  const Maze m = generate_maze(15, 20, rng, 10);
  EXPECT_GT(m.rating, 20);
  EXPECT_TRUE(is_valid_maze_solution(15, m.question, m.answer));
  // Remove one path cell: disconnected.
  std::string broken = m.answer;
  broken[broken.find('o')] = ' ';
  EXPECT_FALSE(is_valid_maze_solution(15, m.question, broken));
  // Mark an extra open cell: no longer a shortest path.
  std::string extra = m.answer;
  for (size_t i = 0; i < extra.size(); ++i)
    if (extra[i] == ' ') {
      extra[i] = 'o';
      break;
    }
  EXPECT_FALSE(is_valid_maze_solution(15, m.question, extra));
  // A path through a wall.
  std::string wall = m.answer;
  wall[0] = 'o';
  EXPECT_FALSE(is_valid_maze_solution(15, m.question, wall));
}

TEST(Maze, GeneratorMeetsTheMinimumPathLength) {
  std::vector<Maze> train, test;
  generate_maze_split(30, 3, 2, 110, 1, &train, &test, false);
  ASSERT_EQ(train.size() + test.size(), 5u);
  for (const auto* v : {&train, &test})
    for (const auto& m : *v) {
      EXPECT_GT(m.rating, 110);
      EXPECT_EQ(maze_shortest_path(30, m.question), m.rating);
      EXPECT_TRUE(is_valid_maze_solution(30, m.question, m.answer));
    }
}

TEST(Maze, CsvErrorsNameFileAndLine) {
  hrm::test::TempDir dir;
  std::ofstream(dir.file("m.csv")) << "source,question,answer,rating\nx,#  #,#  #,1\nx,#SGx,#SGx,1\n";
  try {
    read_maze_csv(dir.file("m.csv"), false);
    FAIL();
  } catch (const hrm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.csv:2"), std::string::npos) << e.what();
  }
  int64_t skipped = 0;
  EXPECT_TRUE(read_maze_csv(dir.file("m.csv"), true, &skipped).empty());
  EXPECT_EQ(skipped, 2);
}

TEST(Maze, BuilderRoundTripsThroughTheLoader) {
  std::vector<Maze> train, test;
  generate_maze_split(12, 4, 2, 10, 5, &train, &test, false);
  hrm::test::TempDir dir;
  MazeBuildOptions o;
  o.output_dir = dir.file("maze");
  o.augment = true;
  const DatasetSummary s = build_maze_dataset(train, test, o);
  EXPECT_EQ(s.train_examples, 32);
  EXPECT_EQ(s.test_examples, 2);
  PuzzleDataset ds(LoaderConfig{o.output_dir, "train", 8, true});
  const char* alphabet = "# SGo";
  for (const auto& b : ds.iteration_batches(0))
    for (int64_t i = 0; i < b.batch.size(); ++i) {
      std::string q, a;
      for (int64_t c = 0; c < 144; ++c) {
        q += alphabet[b.batch.inputs[i][c].item<int>() - 1];
        a += alphabet[b.batch.labels[i][c].item<int>() - 1];
      }
      EXPECT_TRUE(is_valid_maze_solution(12, q, a));  // every augmented path is still optimal
    }
}
