#include "hrm/data/sudoku.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>

#include "hrm/data/csv.h"
#include "hrm/data/format.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/progress.h"

namespace hrm::data {
namespace {

// Rows, columns and boxes of a board, and each cell's peers.
struct Geometry {
  int n = 0;
  std::vector<std::vector<int>> units;
  std::vector<std::vector<int>> peers;
};

const Geometry& geometry(const SudokuShape& s) {
  static std::map<int, std::unique_ptr<Geometry>> cache;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  auto& g = cache[s.size * 100 + s.box_rows];
  if (g) return *g;
  g = std::make_unique<Geometry>();
  const int n = s.size;
  g->n = n;
  for (int r = 0; r < n; ++r) {
    std::vector<int> u;
    for (int c = 0; c < n; ++c) u.push_back(r * n + c);
    g->units.push_back(u);
  }
  for (int c = 0; c < n; ++c) {
    std::vector<int> u;
    for (int r = 0; r < n; ++r) u.push_back(r * n + c);
    g->units.push_back(u);
  }
  for (int br = 0; br < n / s.box_rows; ++br)
    for (int bc = 0; bc < n / s.box_cols; ++bc) {
      std::vector<int> u;
      for (int r = 0; r < s.box_rows; ++r)
        for (int c = 0; c < s.box_cols; ++c) u.push_back((br * s.box_rows + r) * n + bc * s.box_cols + c);
      g->units.push_back(u);
    }
  g->peers.assign(static_cast<size_t>(n * n), {});
  for (int cell = 0; cell < n * n; ++cell) {
    std::vector<bool> seen(static_cast<size_t>(n * n), false);
    for (const auto& u : g->units)
      if (std::find(u.begin(), u.end(), cell) != u.end())
        for (int p : u)
          if (p != cell && !seen[p]) {
            seen[p] = true;
            g->peers[cell].push_back(p);
          }
  }
  return *g;
}

struct Board {
  std::vector<uint8_t> v;
  std::vector<uint16_t> cand;
};

inline int popcount(uint16_t m) { return __builtin_popcount(m); }
inline int lowest_digit(uint16_t m) { return __builtin_ctz(m); }  // bit d <=> digit d

bool place(const Geometry& g, Board& b, int cell, int d) {
  if (!(b.cand[cell] & (1u << d))) return false;
  b.v[cell] = static_cast<uint8_t>(d);
  b.cand[cell] = static_cast<uint16_t>(1u << d);
  for (int p : g.peers[cell]) {
    if (b.v[p] == d) return false;
    b.cand[p] &= static_cast<uint16_t>(~(1u << d));
    if (!b.v[p] && !b.cand[p]) return false;
  }
  return true;
}

// Naked and hidden singles until a fixpoint; false on contradiction.
bool propagate(const Geometry& g, Board& b) {
  const int n = g.n;
  bool changed = true;
  while (changed) {
    changed = false;
    for (int cell = 0; cell < n * n; ++cell) {
      if (b.v[cell]) continue;
      if (!b.cand[cell]) return false;
      if (popcount(b.cand[cell]) == 1) {
        if (!place(g, b, cell, lowest_digit(b.cand[cell]))) return false;
        changed = true;
      }
    }
    for (const auto& u : g.units) {
      for (int d = 1; d <= n; ++d) {
        int count = 0, where = -1;
        bool placed = false;
        for (int cell : u) {
          if (b.v[cell] == d) {
            placed = true;
            break;
          }
          if (!b.v[cell] && (b.cand[cell] & (1u << d))) {
            ++count;
            where = cell;
          }
        }
        if (placed) continue;
        if (count == 0) return false;
        if (count == 1) {
          if (!place(g, b, where, d)) return false;
          changed = true;
        }
      }
    }
  }
  return true;
}

struct Search {
  const Geometry& g;
  int limit;
  std::mt19937_64* rng;  // random value order when set
  SolveResult result;

  void run(Board b) {
    if (result.solutions >= limit) return;
    if (!propagate(g, b)) return;
    int best = -1, best_count = 99;
    for (int cell = 0; cell < g.n * g.n; ++cell) {
      if (b.v[cell]) continue;
      const int c = popcount(b.cand[cell]);
      if (c < best_count) {
        best_count = c;
        best = cell;
      }
    }
    if (best < 0) {
      if (result.solutions++ == 0) result.solution = b.v;
      return;
    }
    std::vector<int> digits;
    for (int d = 1; d <= g.n; ++d)
      if (b.cand[best] & (1u << d)) digits.push_back(d);
    if (rng) std::shuffle(digits.begin(), digits.end(), *rng);
    for (int d : digits) {
      if (result.solutions >= limit) return;
      ++result.guesses;
      Board next = b;
      if (place(g, next, best, d)) run(std::move(next));
    }
  }
};

SolveResult search(const SudokuShape& shape, const SudokuGrid& puzzle, int limit, std::mt19937_64* rng) {
  const Geometry& g = geometry(shape);
  check(static_cast<int>(puzzle.size()) == shape.cells(), "sudoku: grid has the wrong number of cells");
  Board b{std::vector<uint8_t>(puzzle.size(), 0), std::vector<uint16_t>(puzzle.size(), 0)};
  const uint16_t all = static_cast<uint16_t>(((1u << (shape.size + 1)) - 1) & ~1u);
  std::fill(b.cand.begin(), b.cand.end(), all);
  Search s{g, limit, rng, {}};
  for (int cell = 0; cell < shape.cells(); ++cell)
    if (puzzle[cell] && !place(g, b, cell, puzzle[cell])) return s.result;  // contradictory clues: 0 solutions
  s.run(std::move(b));
  return s.result;
}

std::vector<int> permutation(int n, std::mt19937_64& rng) {
  std::vector<int> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

}  // namespace

SudokuShape SudokuShape::of(int size) {
  switch (size) {
    case 4: return {4, 2, 2};
    case 6: return {6, 2, 3};
    case 9: return {9, 3, 3};
    default: throw Error("sudoku: unsupported size " + std::to_string(size) + " (expected 4, 6 or 9)");
  }
}

SolveResult solve_sudoku(const SudokuShape& shape, const SudokuGrid& puzzle, int max_solutions) {
  return search(shape, puzzle, max_solutions, nullptr);
}

bool is_valid_sudoku_solution(const SudokuShape& shape, const SudokuGrid& puzzle, const SudokuGrid& solution) {
  if (static_cast<int>(solution.size()) != shape.cells() || static_cast<int>(puzzle.size()) != shape.cells())
    return false;
  for (int i = 0; i < shape.cells(); ++i) {
    if (solution[i] < 1 || solution[i] > shape.size) return false;
    if (puzzle[i] && puzzle[i] != solution[i]) return false;
  }
  for (const auto& u : geometry(shape).units) {
    uint32_t seen = 0;
    for (int cell : u) seen |= 1u << solution[cell];
    if (seen != (((1u << (shape.size + 1)) - 1) & ~1u)) return false;
  }
  return true;
}

SudokuGrid random_full_sudoku(const SudokuShape& shape, std::mt19937_64& rng) {
  const SolveResult r = search(shape, SudokuGrid(static_cast<size_t>(shape.cells()), 0), 1, &rng);
  check(r.solutions == 1, "sudoku: failed to fill an empty grid");
  return r.solution;
}

GeneratedSudoku generate_sudoku(const SudokuShape& shape, std::mt19937_64& rng, int target_blanks) {
  GeneratedSudoku out;
  out.solution = random_full_sudoku(shape, rng);
  out.puzzle = out.solution;
  int blanks = 0;
  for (int cell : permutation(shape.cells(), rng)) {
    if (target_blanks >= 0 && blanks >= target_blanks) break;
    const uint8_t saved = out.puzzle[cell];
    out.puzzle[cell] = 0;
    if (solve_sudoku(shape, out.puzzle, 2).solutions != 1)
      out.puzzle[cell] = saved;
    else
      ++blanks;
  }
  out.rating = solve_sudoku(shape, out.puzzle, 2).guesses;
  return out;
}

SudokuTransform SudokuTransform::random(const SudokuShape& shape, std::mt19937_64& rng) {
  SudokuTransform t;
  const auto digits = permutation(shape.size, rng);
  t.digit_map.push_back(0);
  for (int d : digits) t.digit_map.push_back(d + 1);
  t.transpose = shape.box_rows == shape.box_cols && std::uniform_int_distribution<int>(0, 1)(rng) == 1;
  for (int band : permutation(shape.size / shape.box_rows, rng))
    for (int r : permutation(shape.box_rows, rng)) t.row_perm.push_back(band * shape.box_rows + r);
  for (int stack : permutation(shape.size / shape.box_cols, rng))
    for (int c : permutation(shape.box_cols, rng)) t.col_perm.push_back(stack * shape.box_cols + c);
  return t;
}

SudokuGrid SudokuTransform::apply(const SudokuShape& shape, const SudokuGrid& grid) const {
  const int n = shape.size;
  SudokuGrid src = grid;
  if (transpose)
    for (int r = 0; r < n; ++r)
      for (int c = 0; c < n; ++c) src[r * n + c] = grid[c * n + r];
  SudokuGrid out(grid.size());
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) out[r * n + c] = static_cast<uint8_t>(digit_map[src[row_perm[r] * n + col_perm[c]]]);
  return out;
}

SudokuGrid parse_sudoku(const SudokuShape& shape, const std::string& text, const std::string& where) {
  check(static_cast<int>(text.size()) == shape.cells(),
        where + ": expected " + std::to_string(shape.cells()) + " characters, got " + std::to_string(text.size()));
  SudokuGrid g(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '.' || ch == '0')
      g[i] = 0;
    else if (ch >= '1' && ch <= '0' + shape.size)
      g[i] = static_cast<uint8_t>(ch - '0');
    else
      throw Error(where + ": invalid character '" + std::string(1, ch) + "' at position " + std::to_string(i));
  }
  return g;
}

std::string format_sudoku(const SudokuGrid& grid, char blank) {
  std::string s;
  for (auto v : grid) s += v ? static_cast<char>('0' + v) : blank;
  return s;
}

std::string pretty_sudoku(const SudokuShape& shape, const SudokuGrid& grid) {
  std::ostringstream out;
  const int n = shape.size;
  for (int r = 0; r < n; ++r) {
    if (r && r % shape.box_rows == 0) {
      for (int c = 0; c < n; ++c) out << (c && c % shape.box_cols == 0 ? "+-" : "") << "--";
      out << "\n";
    }
    for (int c = 0; c < n; ++c) {
      if (c && c % shape.box_cols == 0) out << "| ";
      const uint8_t v = grid[r * n + c];
      out << (v ? static_cast<char>('0' + v) : '.') << ' ';
    }
    out << "\n";
  }
  return out.str();
}

namespace {
std::string relabel(const SudokuGrid& g) {
  int next = 1;
  int map[10] = {0};
  std::string key(g.size(), '0');
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i]) continue;
    if (!map[g[i]]) map[g[i]] = next++;
    key[i] = static_cast<char>('0' + map[g[i]]);
  }
  return key;
}

std::vector<std::vector<int>> all_perms(int n) {
  std::vector<int> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  std::vector<std::vector<int>> out;
  do out.push_back(p);
  while (std::next_permutation(p.begin(), p.end()));
  return out;
}

// All line orders that keep bands together: band order x order within each band.
std::vector<std::vector<int>> line_orders(int groups, int per_group) {
  std::vector<std::vector<int>> out;
  const auto gp = all_perms(groups), ip = all_perms(per_group);
  std::vector<std::vector<int>> partial{{}};
  for (const auto& g : gp) {
    std::vector<std::vector<int>> acc{{}};
    for (int b : g) {
      std::vector<std::vector<int>> next;
      for (const auto& a : acc)
        for (const auto& i : ip) {
          auto x = a;
          for (int k : i) x.push_back(b * per_group + k);
          next.push_back(std::move(x));
        }
      acc = std::move(next);
    }
    out.insert(out.end(), acc.begin(), acc.end());
  }
  return out;
}
}  // namespace

std::string sudoku_canonical_key(const SudokuShape& shape, const SudokuGrid& puzzle) {
  if (shape.size > 6) return relabel(puzzle);
  const int n = shape.size;
  const auto rows = line_orders(n / shape.box_rows, shape.box_rows);
  const auto cols = line_orders(n / shape.box_cols, shape.box_cols);
  std::string best;
  SudokuGrid t(puzzle.size());
  for (const bool transpose : {false, true}) {
    if (transpose && shape.box_rows != shape.box_cols) break;
    for (const auto& rp : rows)
      for (const auto& cp : cols) {
        for (int r = 0; r < n; ++r)
          for (int c = 0; c < n; ++c) t[r * n + c] = transpose ? puzzle[cp[c] * n + rp[r]] : puzzle[rp[r] * n + cp[c]];
        std::string key = relabel(t);
        if (best.empty() || key < best) best = std::move(key);
      }
  }
  return best;
}

void generate_sudoku_split(const SudokuShape& shape, int64_t n_train, int64_t n_test, const SudokuGenerateOptions& o,
                           std::vector<SudokuRecord>* train, std::vector<SudokuRecord>* test) {
  std::mt19937_64 rng(o.seed);
  std::set<std::string> seen;
  ProgressBar bar("sudoku: generating", n_train + n_test, o.progress);
  constexpr int64_t kPatience = 20000;  // consecutive attempts without a new puzzle before giving up
  int64_t fruitless = 0;
  for (auto* out : {train, test}) {
    const int64_t want = out == train ? n_train : n_test;
    while (static_cast<int64_t>(out->size()) < want) {
      if (++fruitless > kPatience)
        throw Error("sudoku: no new distinct puzzle rated >= " + std::to_string(o.min_rating) + " in " +
                    std::to_string(kPatience) + " attempts (got " + std::to_string(train->size()) + " train, " +
                    std::to_string(test->size()) + " test); small boards have few distinct minimal puzzles: " +
                    "use --min-blanks/--max-blanks, or lower --min-rating");
      const int target = o.min_blanks < 0 ? -1
                                          : static_cast<int>(std::uniform_int_distribution<int64_t>(
                                                o.min_blanks, std::max(o.min_blanks, o.max_blanks))(rng));
      GeneratedSudoku g = generate_sudoku(shape, rng, target);
      if (g.rating < o.min_rating) continue;
      if (!seen.insert(sudoku_canonical_key(shape, g.puzzle)).second) continue;
      fruitless = 0;
      out->push_back(SudokuRecord{"hrm-generated", std::move(g.puzzle), std::move(g.solution), g.rating});
      bar.add();
    }
  }
  bar.finish();
}

std::vector<SudokuRecord> read_sudoku_csv(const std::string& path, const SudokuShape& shape, bool skip_invalid,
                                          int64_t* skipped) {
  std::vector<SudokuRecord> out;
  read_puzzle_csv(path, skip_invalid, skipped, [&](const std::vector<std::string>& f, const std::string& where) {
    SudokuRecord r;
    r.source = f[0];
    r.question = parse_sudoku(shape, f[1], where + " (question)");
    r.answer = parse_sudoku(shape, f[2], where + " (answer)");
    r.rating = parse_rating(f[3], where);
    check(is_valid_sudoku_solution(shape, r.question, r.answer),
          where + ": the answer is not a valid solution of the question (constraint broken or clue contradicted)");
    out.push_back(std::move(r));
  });
  return out;
}

void write_sudoku_csv(const std::string& path, const std::vector<SudokuRecord>& records) {
  std::ostringstream out;
  out << "source,question,answer,rating\n";
  for (const auto& r : records)
    out << r.source << "," << format_sudoku(r.question, '.') << "," << format_sudoku(r.answer, '.') << "," << r.rating
        << "\n";
  write_file_atomic(path, out.str());
}

DatasetSummary build_sudoku_dataset(const SudokuShape& shape, std::vector<SudokuRecord> train,
                                    std::vector<SudokuRecord> test, const SudokuBuildOptions& o) {
  std::mt19937_64 rng(o.seed);
  auto keep = [&](std::vector<SudokuRecord>& v) {
    if (o.min_difficulty < 0) return;
    v.erase(std::remove_if(v.begin(), v.end(), [&](const SudokuRecord& r) { return r.rating < o.min_difficulty; }),
            v.end());
  };
  keep(train);
  keep(test);
  if (o.subsample_size >= 0 && o.subsample_size < static_cast<int64_t>(train.size())) {
    std::shuffle(train.begin(), train.end(), rng);
    train.resize(static_cast<size_t>(o.subsample_size));
  }
  auto tokens = [](const SudokuGrid& g) {
    std::vector<uint8_t> t(g.size());
    for (size_t i = 0; i < g.size(); ++i) t[i] = static_cast<uint8_t>(g[i] + 1);
    return t;
  };
  // Tokens 0 PAD, 1 + digit; each puzzle and its augmentations form one group; only train is augmented.
  return build_blank_identifier_dataset(o.output_dir, o.overwrite, shape.cells(), shape.size + 2,
                                        [&](bool is_train, SplitBuilder& split) {
                                          for (const auto& r : is_train ? train : test) {
                                            for (int64_t a = 0; a <= (is_train ? o.num_aug : 0); ++a) {
                                              SudokuGrid q = r.question, s = r.answer;
                                              if (a > 0) {
                                                const SudokuTransform t = SudokuTransform::random(shape, rng);
                                                q = t.apply(shape, q);
                                                s = t.apply(shape, s);
                                              }
                                              split.add_example(tokens(q), tokens(s));
                                              split.end_puzzle(0);
                                            }
                                            split.end_group();
                                          }
                                        });
}

}  // namespace hrm::data
