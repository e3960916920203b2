#include "hrm/data/arc.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "hrm/data/csv.h"
#include "hrm/data/format.h"
#include "hrm/data/grid.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "hrm/util/progress.h"
#include "json_file.h"

namespace hrm::data {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr uint8_t kPad = 0, kEos = 1, kColourOffset = 2;

ArcGrid grid_from_json(const Json& j, const std::string& where) {
  check(j.is_array() && !j.empty(), where + ": a grid must be a non-empty list of rows");
  ArcGrid g;
  g.rows = static_cast<int>(j.size());
  for (const auto& row : j) {
    check(row.is_array() && !row.empty(), where + ": every grid row must be a non-empty list");
    if (g.cols == 0) g.cols = static_cast<int>(row.size());
    check(static_cast<int>(row.size()) == g.cols, where + ": grid rows have different lengths");
    for (const auto& v : row) {
      check(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= 9,
            where + ": grid values must be integers 0..9, got " + v.dump());
      g.cells.push_back(static_cast<uint8_t>(v.get<int64_t>()));
    }
  }
  check(g.rows <= kArcMaxSize && g.cols <= kArcMaxSize,
        where + ": grid " + std::to_string(g.rows) + "x" + std::to_string(g.cols) + " exceeds 30x30");
  return g;
}

Json grid_to_json(const ArcGrid& g) {
  Json rows = Json::array();
  for (int r = 0; r < g.rows; ++r) {
    Json row = Json::array();
    for (int c = 0; c < g.cols; ++c) row.push_back(g.cells[r * g.cols + c]);
    rows.push_back(row);
  }
  return rows;
}

std::vector<ArcPair> pairs_from_json(const Json& list, const std::string& where, bool need_output) {
  check(list.is_array(), where + ": expected a list of pairs");
  std::vector<ArcPair> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string w = where + "[" + std::to_string(i) + "]";
    check(list[i].is_object() && list[i].contains("input"), w + ": a pair needs an 'input' grid");
    ArcPair p;
    p.input = grid_from_json(list[i]["input"], w + ".input");
    if (list[i].contains("output"))
      p.output = grid_from_json(list[i]["output"], w + ".output");
    else
      check(!need_output, w + ": missing 'output' grid");
    out.push_back(std::move(p));
  }
  return out;
}

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

uint64_t hash_pairs(const std::vector<ArcPair>& a, const std::vector<ArcPair>& b) {
  uint64_t h = 1469598103934665603ull;
  for (const auto* list : {&a, &b})
    for (const auto& p : *list)
      for (const ArcGrid* g : {&p.input, &p.output}) {
        const uint8_t dims[2] = {static_cast<uint8_t>(g->rows), static_cast<uint8_t>(g->cols)};
        h = fnv1a(h, dims, 2);
        h = fnv1a(h, g->cells.data(), g->cells.size());
      }
  return h;
}

}  // namespace

std::string arc_grid_to_json(const ArcGrid& g) { return grid_to_json(g).dump(); }

ArcGrid parse_arc_grid(const std::string& json_text, const std::string& where) {
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    throw Error(where + ": invalid JSON: " + e.what());
  }
  return grid_from_json(j, where);
}

std::vector<ArcTask> read_arc_folder(const std::string& dir) {
  check(fs::is_directory(dir), dir + ": not a folder");
  std::vector<std::string> subdirs;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) subdirs.push_back(e.path().filename().string());
  std::sort(subdirs.begin(), subdirs.end());
  std::vector<ArcTask> tasks;
  for (const auto& sub : subdirs) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / sub))
      if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const Json j = parse_json_file(f.string());
      check(j.is_object() && j.contains("train") && j.contains("test"), f.string() + ": needs 'train' and 'test'");
      ArcTask t;
      t.id = f.stem().string();
      t.set = sub;
      t.train = pairs_from_json(j["train"], f.string() + ": train", true);
      t.test = pairs_from_json(j["test"], f.string() + ": test", true);
      tasks.push_back(std::move(t));
    }
  }
  check(!tasks.empty(), dir + ": no task files found in its subfolders (expected training/ and evaluation/)");
  return tasks;
}

std::vector<ArcTask> read_arc_kaggle(const std::string& prefix, const std::string& set) {
  const std::string cpath = prefix + "_" + set + "_challenges.json", spath = prefix + "_" + set + "_solutions.json";
  const Json c = parse_json_file(cpath), s = parse_json_file(spath);
  check(c.is_object(), cpath + ": expected an object of tasks");
  check(s.is_object(), spath + ": expected an object of solutions");
  std::vector<ArcTask> tasks;
  for (auto it = c.begin(); it != c.end(); ++it) {
    const std::string where = cpath + ": task " + it.key();
    check(it->is_object() && it->contains("train") && it->contains("test"), where + ": needs 'train' and 'test'");
    ArcTask t;
    t.id = it.key();
    t.set = set;
    t.train = pairs_from_json((*it)["train"], where + " train", true);
    t.test = pairs_from_json((*it)["test"], where + " test", false);
    check(s.contains(it.key()), spath + ": no solutions for task " + it.key());
    const Json& sol = s[it.key()];
    check(sol.is_array() && sol.size() == t.test.size(),
          spath + ": task " + it.key() + " needs one solution per test input (" + std::to_string(t.test.size()) + ")");
    for (size_t i = 0; i < t.test.size(); ++i)
      t.test[i].output = grid_from_json(sol[i], spath + ": task " + it.key() + " solution " + std::to_string(i));
    tasks.push_back(std::move(t));
  }
  std::sort(tasks.begin(), tasks.end(), [](const ArcTask& a, const ArcTask& b) { return a.id < b.id; });
  return tasks;
}

// ------------------------------------------------------------------ augmentation and encoding
bool ArcAugment::identity() const {
  if (tid != 0) return false;
  for (int c = 0; c < 10; ++c)
    if (colour_map[c] != c) return false;
  return true;
}

std::string ArcAugment::name(const std::string& task_id) const {
  if (identity()) return task_id;
  std::string digits;
  for (auto c : colour_map) digits += static_cast<char>('0' + c);
  return task_id + "_t" + std::to_string(tid) + "_" + digits;
}

bool ArcAugment::parse(const std::string& name, std::string* task_id, ArcAugment* augment) {
  const auto last = name.rfind('_');
  if (last == std::string::npos || last == 0) return false;
  const auto prev = name.rfind('_', last - 1);
  if (prev == std::string::npos) return false;
  const std::string t = name.substr(prev + 1, last - prev - 1), digits = name.substr(last + 1);
  if (t.size() != 2 || t[0] != 't' || t[1] < '0' || t[1] > '7' || digits.size() != 10) return false;
  ArcAugment a;
  a.tid = t[1] - '0';
  std::vector<bool> seen(10, false);
  for (int i = 0; i < 10; ++i) {
    if (digits[i] < '0' || digits[i] > '9' || seen[digits[i] - '0']) return false;
    seen[digits[i] - '0'] = true;
    a.colour_map[i] = static_cast<uint8_t>(digits[i] - '0');
  }
  if (task_id) *task_id = name.substr(0, prev);
  if (augment) *augment = a;
  return true;
}

ArcGrid ArcAugment::apply(const ArcGrid& g) const {
  ArcGrid out;
  out.cells = dihedral_transform(g.cells, g.rows, g.cols, tid, &out.rows, &out.cols);
  for (auto& c : out.cells) c = colour_map[c];
  return out;
}

ArcGrid ArcAugment::invert(const ArcGrid& g) const {
  std::vector<uint8_t> inverse(10, 0);
  for (int c = 0; c < 10; ++c) inverse[colour_map[c]] = static_cast<uint8_t>(c);
  ArcGrid out;
  std::vector<uint8_t> cells = g.cells;
  for (auto& c : cells) c = inverse[c];
  out.cells = dihedral_transform(cells, g.rows, g.cols, dihedral_inverse(tid), &out.rows, &out.cols);
  return out;
}

std::vector<uint8_t> encode_arc_grid(const ArcGrid& g, int row_offset, int col_offset) {
  check(row_offset >= 0 && col_offset >= 0 && row_offset + g.rows <= kArcMaxSize && col_offset + g.cols <= kArcMaxSize,
        "arc: grid does not fit at that offset");
  std::vector<uint8_t> t(kArcMaxSize * kArcMaxSize, kPad);
  for (int r = 0; r < g.rows; ++r)
    for (int c = 0; c < g.cols; ++c)
      t[(row_offset + r) * kArcMaxSize + col_offset + c] =
          static_cast<uint8_t>(g.cells[r * g.cols + c] + kColourOffset);
  const int eos_row = row_offset + g.rows, eos_col = col_offset + g.cols;
  if (eos_row < kArcMaxSize)
    for (int c = col_offset; c < eos_col; ++c) t[eos_row * kArcMaxSize + c] = kEos;
  if (eos_col < kArcMaxSize)
    for (int r = row_offset; r < eos_row; ++r) t[r * kArcMaxSize + eos_col] = kEos;
  return t;
}

ArcGrid crop_arc_grid(const std::vector<uint8_t>& tokens) {
  check(tokens.size() == static_cast<size_t>(kArcMaxSize * kArcMaxSize), "arc: a prediction must have 900 tokens");
  // The largest colour rectangle at the origin (the published evaluation's crop).
  int best_area = 0, best_rows = 0, best_cols = 0, cols = kArcMaxSize;
  for (int rows = 1; rows <= kArcMaxSize; ++rows) {
    for (int c = 0; c < cols; ++c) {
      const uint8_t x = tokens[(rows - 1) * kArcMaxSize + c];
      if (x < kColourOffset || x > kColourOffset + 9) {
        cols = c;
        break;
      }
    }
    if (rows * cols > best_area) {
      best_area = rows * cols;
      best_rows = rows;
      best_cols = cols;
    }
  }
  ArcGrid g{best_rows, best_cols, {}};
  for (int r = 0; r < best_rows; ++r)
    for (int c = 0; c < best_cols; ++c)
      g.cells.push_back(static_cast<uint8_t>(tokens[r * kArcMaxSize + c] - kColourOffset));
  return g;
}

// ------------------------------------------------------------------ builder
ArcSummary build_arc_dataset(const std::vector<ArcTask>& tasks, const ArcBuildOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  ArcSummary summary;
  // Warn about tasks of the test set that also appear (by id or content) in a training set.
  {
    std::map<std::string, std::string> test_ids;
    std::map<uint64_t, std::string> test_hashes;
    for (const auto& t : tasks)
      if (t.set == o.test_set) {
        test_ids[t.id] = t.set;
        test_hashes[hash_pairs(t.train, t.test)] = t.id;
      }
    int64_t overlap = 0;
    std::string example;
    for (const auto& t : tasks)
      if (t.set != o.test_set && (test_ids.count(t.id) || test_hashes.count(hash_pairs(t.train, t.test)))) {
        ++overlap;
        if (example.empty()) example = t.id + " (" + t.set + ")";
      }
    if (overlap)
      summary.warnings.push_back(std::to_string(overlap) + " training task(s) also appear in the test set '" +
                                 o.test_set + "', e.g. " + example +
                                 ": the evaluation would see its own tasks in training (ARC-2 training contains "
                                 "ARC-1 evaluation tasks)");
  }

  DatasetMetadata meta;
  meta.pad_id = kPad;
  meta.ignore_label_id = kPad;
  meta.blank_identifier_id = 0;
  meta.vocab_size = 12;
  std::map<std::string, int32_t> identifiers;
  std::vector<std::string> identifier_list{"<blank>"};
  auto identifier = [&](const std::string& name) {
    auto [it, fresh] = identifiers.emplace(name, static_cast<int32_t>(identifier_list.size()));
    if (fresh) identifier_list.push_back(name);
    return it->second;
  };

  // Examples stream into the folder's files as they are made: 1000 augmentations of ARC-1 are ~6.5 GB of tokens.
  DatasetFolder folder(o.output_dir, o.overwrite);
  const std::string train_dir = folder.split_dir("train"), test_dir = folder.split_dir("test");
  SplitBuilder train(kArcMaxSize * kArcMaxSize, train_dir), test(kArcMaxSize * kArcMaxSize, test_dir);
  Json test_puzzles = Json::object();
  ProgressBar bar("arc: augmenting", static_cast<int64_t>(tasks.size()), o.progress);
  for (const auto& task : tasks) {
    const bool is_test_task = task.set == o.test_set;
    std::mt19937_64 rng(o.seed ^ (std::hash<std::string>{}(task.id) * 0x9E3779B97F4A7C15ull));
    struct Variant {
      ArcAugment augment;
      std::vector<ArcPair> train, test;  // the task's pairs under `augment`
    };
    std::vector<Variant> variants{{ArcAugment{}, task.train, task.test}};
    std::unordered_set<uint64_t> seen{hash_pairs(task.train, task.test)};
    for (int64_t trial = 0; trial < o.retries_factor * o.num_aug && static_cast<int64_t>(variants.size()) <= o.num_aug;
         ++trial) {
      Variant v;
      v.augment.tid = std::uniform_int_distribution<int>(0, 7)(rng);
      std::vector<uint8_t> colours{1, 2, 3, 4, 5, 6, 7, 8, 9};
      std::shuffle(colours.begin(), colours.end(), rng);
      std::copy(colours.begin(), colours.end(), v.augment.colour_map.begin() + 1);
      for (const auto& p : task.train) v.train.push_back({v.augment.apply(p.input), v.augment.apply(p.output)});
      for (const auto& p : task.test) v.test.push_back({v.augment.apply(p.input), v.augment.apply(p.output)});
      if (seen.insert(hash_pairs(v.train, v.test)).second) variants.push_back(std::move(v));
    }
    for (const auto& v : variants) {
      const int32_t id = identifier(v.augment.name(task.id));
      // Train split: demonstrations (and, for training tasks, the test pairs too), translated except one.
      std::vector<const ArcPair*> pairs;
      for (const auto& p : v.train) pairs.push_back(&p);
      if (!is_test_task)
        for (const auto& p : v.test) pairs.push_back(&p);
      const size_t keep = std::uniform_int_distribution<size_t>(0, pairs.size() - 1)(rng);
      for (size_t i = 0; i < pairs.size(); ++i) {
        int r0 = 0, c0 = 0;
        if (o.translate && i != keep) {
          const int rows = std::max(pairs[i]->input.rows, pairs[i]->output.rows);
          const int cols = std::max(pairs[i]->input.cols, pairs[i]->output.cols);
          r0 = std::uniform_int_distribution<int>(0, kArcMaxSize - rows)(rng);
          c0 = std::uniform_int_distribution<int>(0, kArcMaxSize - cols)(rng);
        }
        train.add_example(encode_arc_grid(pairs[i]->input, r0, c0), encode_arc_grid(pairs[i]->output, r0, c0));
      }
      train.end_puzzle(id);
      if (is_test_task) {
        for (const auto& p : v.test) test.add_example(encode_arc_grid(p.input), encode_arc_grid(p.output));
        test.end_puzzle(id);
      }
    }
    train.end_group();
    if (is_test_task) {
      test.end_group();
      Json t = {{"train", Json::array()}, {"test", Json::array()}};
      for (const auto& p : task.train)
        t["train"].push_back({{"input", grid_to_json(p.input)}, {"output", grid_to_json(p.output)}});
      for (const auto& p : task.test)
        t["test"].push_back({{"input", grid_to_json(p.input)}, {"output", grid_to_json(p.output)}});
      test_puzzles[task.id] = t;
      ++summary.test_tasks;
    }
    bar.add();
  }
  bar.finish();
  check(summary.test_tasks > 0 || o.test_set.empty(), "arc: no task of the test set '" + o.test_set + "' was loaded");
  meta.num_puzzle_identifiers = static_cast<int64_t>(identifier_list.size());

  train.write(train_dir, meta);
  test.write(test_dir, meta);
  write_json_file(folder.path("identifiers.json"), Json(identifier_list).dump());
  write_json_file(folder.path("test_puzzles.json"), test_puzzles.dump());
  folder.commit();

  summary.tasks = static_cast<int64_t>(tasks.size());
  summary.identifiers = meta.num_puzzle_identifiers;
  summary.train_examples = train.examples();
  summary.test_examples = test.examples();
  summary.train_groups = train.groups();
  summary.test_groups = test.groups();
  summary.seq_len = kArcMaxSize * kArcMaxSize;
  summary.vocab_size = 12;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace hrm::data
