#pragma once
// The published puzzle-dataset format and its loader.
//
// DIR/{train,test}/dataset.json + <set>__{inputs,labels,puzzle_identifiers,puzzle_indices,group_indices}.npy,
// DIR/identifiers.json (and for ARC DIR/test_puzzles.json). Examples are grouped into puzzles (puzzle_indices:
// example offsets) and puzzles into groups (group_indices: puzzle offsets; a group = a puzzle and its augmentations).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <torch/types.h>

#include "hrm/model/hrm.h"

namespace hrm::data {

struct DatasetMetadata {
  int64_t pad_id = 0;
  std::optional<int64_t> ignore_label_id = 0;
  int64_t blank_identifier_id = 0;
  int64_t vocab_size = 0;
  int64_t seq_len = 0;
  int64_t num_puzzle_identifiers = 1;
  int64_t total_groups = 0;
  double mean_puzzle_examples = 0;
  std::vector<std::string> sets = {"all"};

  static DatasetMetadata load(const std::string& path);  // dataset.json; errors name the file and the key
  std::string to_json() const;
};

// One split being built in memory (tokens as uint8, as the published builders write them).
class SplitBuilder {
 public:
  explicit SplitBuilder(int64_t seq_len) : seq_len_(seq_len) {}
  void add_example(const std::vector<uint8_t>& input, const std::vector<uint8_t>& label);
  void end_puzzle(int32_t identifier);  // the examples added since the last end_puzzle form one puzzle
  void end_group();                     // the puzzles since the last end_group form one group
  int64_t examples() const { return static_cast<int64_t>(inputs_.size()) / seq_len_; }
  int64_t puzzles() const { return static_cast<int64_t>(puzzle_identifiers_.size()); }
  int64_t groups() const { return static_cast<int64_t>(group_indices_.size()) - 1; }
  // Writes <set>__*.npy and dataset.json (total_groups, mean_puzzle_examples and seq_len filled in).
  void write(const std::string& split_dir, DatasetMetadata metadata, const std::string& set = "all") const;

 private:
  int64_t seq_len_;
  std::vector<uint8_t> inputs_, labels_;
  std::vector<int32_t> puzzle_identifiers_, puzzle_indices_{0}, group_indices_{0};
};

// Builds a dataset folder under a temporary name and renames it into place on commit(): an interrupted build
// leaves no half dataset (the temporary folder is removed by the destructor).
class DatasetFolder {
 public:
  explicit DatasetFolder(std::string final_dir, bool overwrite = false);
  ~DatasetFolder();
  std::string split_dir(const std::string& split);  // created on demand
  std::string path(const std::string& name) const;  // a file at the top of the folder
  void commit();

 private:
  std::string final_dir_, temp_dir_;
  bool committed_ = false;
};

void write_json_file(const std::string& path, const std::string& json_text);  // atomic

struct DatasetSummary {
  int64_t train_examples = 0, test_examples = 0, train_groups = 0, test_groups = 0;
  int64_t seq_len = 0, vocab_size = 0, skipped = 0;
  double seconds = 0;
};

// Builds a dataset whose puzzles all use the blank identifier 0 (Sudoku, Maze): `fill(is_train, split)` adds one
// split's examples; both splits and identifiers.json are written into a folder renamed into place at the end.
// pad_id and ignore_label_id are 0.
DatasetSummary build_blank_identifier_dataset(const std::string& output_dir, bool overwrite, int64_t seq_len,
                                              int64_t vocab_size,
                                              const std::function<void(bool is_train, SplitBuilder& split)>& fill);

// Reads the published puzzle CSV layout (header `source,question,answer,rating`): calls `row` with the four fields
// and "file:line" for each non-empty line. An hrm::Error from `row` (or a wrong field count) is rethrown, or with
// skip_invalid counted in *skipped.
void read_puzzle_csv(const std::string& path, bool skip_invalid, int64_t* skipped,
                     const std::function<void(const std::vector<std::string>& fields, const std::string& where)>& row);
// Parses the rating field; errors name `where`.
int64_t parse_rating(const std::string& text, const std::string& where);

// ------------------------------------------------------------------ loader
struct LoaderConfig {
  std::string dataset_path;
  std::string split = "train";
  int64_t global_batch_size = 32;
  bool test_mode = false;      // all examples in order, last batch padded; else shuffled groups, last batch dropped
  int64_t epochs_per_iter = 1;
  uint64_t seed = 0;
  int64_t rank = 0, world_size = 1;
};

struct LoadedBatch {
  std::string set_name;
  Batch batch;                 // int32 tensors; labels equal to ignore_label_id are -100; local (per-rank) size
  int64_t effective_size = 0;  // real (unpadded) examples in the global batch
};

// A read-only memory map of a .npy file.
class NpyMap;

class PuzzleDataset {
 public:
  // Validates every set (headers, shapes, offsets, identifier and token ranges); errors name the file.
  explicit PuzzleDataset(LoaderConfig config);
  ~PuzzleDataset();
  const DatasetMetadata& metadata() const { return metadata_; }
  const LoaderConfig& config() const { return config_; }
  int64_t local_batch_size() const { return config_.global_batch_size / config_.world_size; }
  int64_t num_examples() const;

  // Every batch of one iteration (train: epochs_per_iter shuffled epochs; test: one pass), in order.
  // `iteration` seeds the shuffle (seed + iteration), so iteration k is the same on every run and rank.
  std::vector<LoadedBatch> iteration_batches(int64_t iteration) const;
  // The same, one batch at a time through `emit` (return false to stop early).
  void for_each_batch(int64_t iteration, const std::function<bool(LoadedBatch&&)>& emit) const;

 private:
  struct Set;
  LoadedBatch collate(const Set& set, const std::vector<int64_t>& examples, const std::vector<int64_t>& puzzles,
                      int64_t effective) const;
  LoaderConfig config_;
  DatasetMetadata metadata_;
  std::vector<std::unique_ptr<Set>> sets_;
};

// Prepares the batches of successive iterations in a background thread (bounded queue), so that loading never
// stalls the training step.
class BackgroundLoader {
 public:
  // Iterations first_iteration, first_iteration+1, ... (num_iterations of them; -1 = without end). Test mode: one pass.
  BackgroundLoader(std::shared_ptr<const PuzzleDataset> dataset, int64_t first_iteration, size_t capacity = 8,
                   int64_t num_iterations = -1);
  ~BackgroundLoader();
  // Next batch; `iteration` receives the iteration it belongs to. std::nullopt at the end (test mode: after the
  // single pass; train mode: after num_iterations). Throws when loading failed or a training split has no full batch.
  std::optional<LoadedBatch> next(int64_t* iteration = nullptr);

 private:
  void run();
  std::shared_ptr<const PuzzleDataset> dataset_;
  int64_t iteration_;
  size_t capacity_;
  int64_t num_iterations_;
  std::deque<std::pair<int64_t, std::optional<LoadedBatch>>> queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string error_;
  std::thread thread_;
};

}  // namespace hrm::data
