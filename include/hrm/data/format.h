#pragma once
// The published puzzle-dataset format, and writing it.
//
// DIR/{train,test}/dataset.json + <set>__{inputs,labels,puzzle_identifiers,puzzle_indices,group_indices}.npy,
// DIR/identifiers.json (and for ARC DIR/test_puzzles.json). Examples are grouped into puzzles (puzzle_indices:
// example offsets) and puzzles into groups (group_indices: puzzle offsets; a group = a puzzle and its augmentations).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// A dataset's identifiers.json: the list of puzzle identifier names (index = identifier id, 0 = "<blank>").
std::vector<std::string> read_identifiers(const std::string& path);

// One split being built (tokens as uint8, as the published builders write them). In memory, or streamed: with a
// split folder given at construction, inputs and labels go to its <set>__{inputs,labels}.npy as they are added, so
// that memory stays bounded however many augmentations a build makes; write() must then name the same folder.
class SplitBuilder {
 public:
  explicit SplitBuilder(int64_t seq_len);
  SplitBuilder(int64_t seq_len, const std::string& stream_to_split_dir, const std::string& set = "all");
  ~SplitBuilder();
  void add_example(const std::vector<uint8_t>& input, const std::vector<uint8_t>& label);
  void end_puzzle(int32_t identifier);  // the examples added since the last end_puzzle form one puzzle
  void end_group();                     // the puzzles since the last end_group form one group
  int64_t examples() const { return examples_; }
  int64_t puzzles() const { return static_cast<int64_t>(puzzle_identifiers_.size()); }
  int64_t groups() const { return static_cast<int64_t>(group_indices_.size()) - 1; }
  // Writes <set>__*.npy and dataset.json (total_groups, mean_puzzle_examples and seq_len filled in).
  void write(const std::string& split_dir, DatasetMetadata metadata, const std::string& set = "all");

 private:
  struct Stream;
  int64_t seq_len_, examples_ = 0;
  std::vector<uint8_t> inputs_, labels_;  // in memory only
  std::unique_ptr<Stream> stream_;
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

}  // namespace hrm::data
