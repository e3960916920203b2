#pragma once
// Mazes in the published Maze-Hard layout: '#' wall, ' ' open, 'S' start, 'G' goal, 'o' path (answers only).
// Tokens 1..5 in that order, 0 PAD.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "hrm/data/format.h"  // DatasetSummary

namespace hrm::data {

// Token t of the maze vocabulary is the character kMazeCells[t] (0 = PAD, shown as '?').
constexpr char kMazeCells[] = "?# SGo";
constexpr int32_t kMazeVocab = 6;
// The token of a maze character ('#', ' ', 'S', 'G', 'o'), or -1.
int32_t maze_token(char cell);

struct Maze {
  int size = 30;
  std::string question;  // size*size characters of "# SG"
  std::string answer;    // the question with 'o' on the cells of one shortest S-G path
  int64_t rating = 0;    // shortest path length in moves
};

// Shortest S-G path length in moves over non-wall cells (4-neighbourhood); -1 if none. Throws unless exactly one
// S and one G. `path` receives the cells of one shortest path (excluding S and G) when given.
int64_t maze_shortest_path(int size, const std::string& question, std::vector<int>* path = nullptr);

// True iff the 'o' cells of `predicted` together with S and G form a connected S-G path through open cells of
// `question`, the rest of the grid equals the question, and its length is optimal.
bool is_valid_maze_solution(int size, const std::string& question, const std::string& predicted);

// Randomised DFS carving, then `extra_openings` random walls opened; S and G placed on open cells; retried until
// the shortest path is longer than min_path_length.
Maze generate_maze(int size, int64_t min_path_length, std::mt19937_64& rng, int extra_openings = 60);

// n_train + n_test distinct generated mazes (no test maze is a dihedral image of another maze).
void generate_maze_split(int size, int64_t n_train, int64_t n_test, int64_t min_path_length, uint64_t seed,
                         std::vector<Maze>* train, std::vector<Maze>* test, bool progress = true);

std::vector<Maze> read_maze_csv(const std::string& path, bool skip_invalid, int64_t* skipped = nullptr);
void write_maze_csv(const std::string& path, const std::vector<Maze>& mazes);

struct MazeBuildOptions {
  std::string output_dir;
  bool augment = false;  // 8 dihedral copies of each training maze
  uint64_t seed = 0;
  bool overwrite = false;
};
// seq_len size^2, vocab 6; each maze and its augmentations = a group.
DatasetSummary build_maze_dataset(const std::vector<Maze>& train, const std::vector<Maze>& test,
                                  const MazeBuildOptions& options);

}  // namespace hrm::data
