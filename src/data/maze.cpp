#include "hrm/data/maze.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <set>
#include <sstream>

#include "hrm/data/csv.h"
#include "hrm/data/grid.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/progress.h"

namespace hrm::data {
namespace {

int find_unique(const std::string& q, char ch) {
  const auto first = q.find(ch);
  check(first != std::string::npos, std::string("maze: no '") + ch + "' cell");
  check(q.find(ch, first + 1) == std::string::npos, std::string("maze: more than one '") + ch + "' cell");
  return static_cast<int>(first);
}

std::vector<int> bfs(int size, const std::string& q, int from) {
  std::vector<int> dist(q.size(), -1);
  std::deque<int> todo{from};
  dist[from] = 0;
  while (!todo.empty()) {
    const int c = todo.front();
    todo.pop_front();
    const int r = c / size, k = c % size;
    const int nb[4][2] = {{r - 1, k}, {r + 1, k}, {r, k - 1}, {r, k + 1}};
    for (const auto& p : nb) {
      if (p[0] < 0 || p[1] < 0 || p[0] >= size || p[1] >= size) continue;
      const int n = p[0] * size + p[1];
      if (q[n] == '#' || dist[n] >= 0) continue;
      dist[n] = dist[c] + 1;
      todo.push_back(n);
    }
  }
  return dist;
}
}  // namespace

int64_t maze_shortest_path(int size, const std::string& q, std::vector<int>* path) {
  check(static_cast<int>(q.size()) == size * size, "maze: wrong number of cells");
  const int s = find_unique(q, 'S'), g = find_unique(q, 'G');
  const std::vector<int> dist = bfs(size, q, s);
  if (dist[g] < 0) return -1;
  if (path) {
    path->clear();
    int c = g;
    while (dist[c] > 1) {  // walk back from G to S along decreasing distance
      const int r = c / size, k = c % size;
      const int nb[4][2] = {{r - 1, k}, {r + 1, k}, {r, k - 1}, {r, k + 1}};
      for (const auto& p : nb) {
        if (p[0] < 0 || p[1] < 0 || p[0] >= size || p[1] >= size) continue;
        const int n = p[0] * size + p[1];
        if (dist[n] == dist[c] - 1) {
          c = n;
          break;
        }
      }
      path->push_back(c);
    }
    std::reverse(path->begin(), path->end());
  }
  return dist[g];
}

bool is_valid_maze_solution(int size, const std::string& question, const std::string& predicted) {
  if (predicted.size() != question.size()) return false;
  // Everything but the marked path must equal the question; the path may only use open cells.
  for (size_t i = 0; i < question.size(); ++i) {
    if (predicted[i] == 'o') {
      if (question[i] != ' ') return false;
    } else if (predicted[i] != question[i]) {
      return false;
    }
  }
  const int64_t best = maze_shortest_path(size, question);
  if (best < 0) return false;
  // The path cells plus S and G, walked as a graph: connected from S to G and exactly best moves long.
  std::string walk = question;
  for (auto& ch : walk) ch = '#';
  int64_t marked = 0;
  for (size_t i = 0; i < question.size(); ++i)
    if (predicted[i] == 'o' || predicted[i] == 'S' || predicted[i] == 'G') {
      walk[i] = predicted[i] == 'o' ? ' ' : predicted[i];
      marked += predicted[i] == 'o';
    }
  const int64_t len = maze_shortest_path(size, walk);
  return len == best && marked == best - 1;
}

Maze generate_maze(int size, int64_t min_path_length, std::mt19937_64& rng, int extra_openings) {
  check(size >= 5, "maze: size must be >= 5");
  for (int attempt = 0; attempt < 100000; ++attempt) {
    std::string q(static_cast<size_t>(size * size), '#');
    // Carve on the odd lattice with an explicit-stack randomised DFS.
    std::vector<int> stack{1 * size + 1};
    q[size + 1] = ' ';
    while (!stack.empty()) {
      const int c = stack.back(), r = c / size, k = c % size;
      int moves[4][2] = {{-2, 0}, {2, 0}, {0, -2}, {0, 2}};
      std::shuffle(std::begin(moves), std::end(moves), rng);
      bool moved = false;
      for (const auto& m : moves) {
        const int nr = r + m[0], nk = k + m[1];
        if (nr < 1 || nk < 1 || nr >= size - 1 || nk >= size - 1 || q[nr * size + nk] != '#') continue;
        q[(r + m[0] / 2) * size + k + m[1] / 2] = ' ';
        q[nr * size + nk] = ' ';
        stack.push_back(nr * size + nk);
        moved = true;
        break;
      }
      if (!moved) stack.pop_back();
    }
    // Extra openings make several routes (shortest paths must be found, not just followed).
    std::uniform_int_distribution<int> inner(1, size - 2);
    for (int i = 0; i < extra_openings; ++i) q[inner(rng) * size + inner(rng)] = ' ';
    std::vector<int> open;
    for (int i = 0; i < size * size; ++i)
      if (q[i] == ' ') open.push_back(i);
    std::shuffle(open.begin(), open.end(), rng);
    q[open[0]] = 'S';
    q[open[1]] = 'G';
    std::vector<int> path;
    const int64_t len = maze_shortest_path(size, q, &path);
    if (len <= min_path_length) continue;
    Maze m{size, q, q, len};
    for (int c : path) m.answer[c] = 'o';
    return m;
  }
  throw Error("maze: no maze with a shortest path longer than " + std::to_string(min_path_length) +
              " found in 100000 attempts (lower --min-path-length)");
}

void generate_maze_split(int size, int64_t n_train, int64_t n_test, int64_t min_path_length, uint64_t seed,
                         std::vector<Maze>* train, std::vector<Maze>* test, bool progress) {
  std::mt19937_64 rng(seed);
  std::set<std::string> seen;
  ProgressBar bar("maze: generating", n_train + n_test, progress);
  for (auto* out : {train, test}) {
    const int64_t want = out == train ? n_train : n_test;
    while (static_cast<int64_t>(out->size()) < want) {
      Maze m = generate_maze(size, min_path_length, rng);
      std::string key = m.question;
      for (int t = 1; t < 8; ++t) key = std::min(key, dihedral_transform_string(m.question, size, t));
      if (!seen.insert(key).second) continue;
      out->push_back(std::move(m));
      bar.add();
    }
  }
  bar.finish();
}

int32_t maze_token(char cell) {
  for (int32_t t = 1; t < kMazeVocab; ++t)
    if (kMazeCells[t] == cell) return t;
  return -1;
}

std::vector<Maze> read_maze_csv(const std::string& path, bool skip_invalid, int64_t* skipped) {
  std::vector<Maze> out;
  read_puzzle_csv(path, skip_invalid, skipped, [&](const std::vector<std::string>& f, const std::string& where) {
    const int size = static_cast<int>(std::lround(std::sqrt(static_cast<double>(f[1].size()))));
    check(size * size == static_cast<int>(f[1].size()) && f[2].size() == f[1].size(),
          where + ": question and answer must be square grids of the same size");
    for (char ch : f[1])
      check(maze_token(ch) > 0 && ch != 'o', where + ": invalid question character '" + std::string(1, ch) + "'");
    for (char ch : f[2]) check(maze_token(ch) > 0, where + ": invalid answer character '" + std::string(1, ch) + "'");
    Maze m{size, f[1], f[2], parse_rating(f[3], where)};
    try {
      check(is_valid_maze_solution(size, m.question, m.answer), "the answer is not a shortest S-G path");
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    out.push_back(std::move(m));
  });
  return out;
}

void write_maze_csv(const std::string& path, const std::vector<Maze>& mazes) {
  std::ostringstream out;
  out << "source,question,answer,rating\n";
  for (const auto& m : mazes) out << "hrm-generated," << m.question << "," << m.answer << "," << m.rating << "\n";
  write_file_atomic(path, out.str());
}

DatasetSummary build_maze_dataset(const std::vector<Maze>& train, const std::vector<Maze>& test,
                                  const MazeBuildOptions& o) {
  check(!train.empty() || !test.empty(), "maze: no mazes to write");
  const int size = train.empty() ? test[0].size : train[0].size;
  auto tokens = [&](const std::string& s) {
    std::vector<uint8_t> t(s.size());
    for (size_t i = 0; i < s.size(); ++i) t[i] = static_cast<uint8_t>(maze_token(s[i]));
    return t;
  };
  // Each maze and its dihedral copies (training only, with augment) form one group.
  return build_blank_identifier_dataset(o.output_dir, o.overwrite, static_cast<int64_t>(size) * size, kMazeVocab,
                                        [&](bool is_train, SplitBuilder& split) {
                                          for (const Maze& m : is_train ? train : test) {
                                            check(m.size == size, "maze: all mazes must have the same size");
                                            for (int t = 0; t < (is_train && o.augment ? 8 : 1); ++t) {
                                              split.add_example(tokens(dihedral_transform_string(m.question, size, t)),
                                                                tokens(dihedral_transform_string(m.answer, size, t)));
                                              split.end_puzzle(0);
                                            }
                                            split.end_group();
                                          }
                                        });
}

}  // namespace hrm::data
