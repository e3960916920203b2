#pragma once
// Reading a dataset in the published format (include/hrm/data/format.h): validation, memory-mapped arrays, the
// published sampling (shuffled groups, one random puzzle of each), and a background thread that keeps batches ready.
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

#include "hrm/data/batch.h"
#include "hrm/data/format.h"

namespace hrm::data {

struct LoaderConfig {
  std::string dataset_path;
  std::string split = "train";
  int64_t global_batch_size = 32;
  bool test_mode = false;  // all examples in order, last batch padded; else shuffled groups, last batch dropped
  int64_t epochs_per_iter = 1;
  uint64_t seed = 0;
  int64_t rank = 0, world_size = 1;

  // The test split of a dataset, read in order (evaluation).
  static LoaderConfig test_split(const std::string& dataset_path, int64_t global_batch_size) {
    LoaderConfig c;
    c.dataset_path = dataset_path;
    c.split = "test";
    c.test_mode = true;
    c.global_batch_size = global_batch_size;
    return c;
  }
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
