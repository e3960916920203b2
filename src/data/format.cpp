#include "hrm/data/format.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "hrm/data/npy.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"
#include "json_file.h"

namespace hrm::data {
namespace fs = std::filesystem;
using Json = nlohmann::json;

// ------------------------------------------------------------------ metadata
std::vector<std::string> read_identifiers(const std::string& path) {
  const Json j = parse_json_file(path);
  check(j.is_array(), path + ": expected a JSON list of identifier strings");
  std::vector<std::string> out;
  for (const Json& id : j) {
    check(id.is_string(), path + ": identifier " + std::to_string(out.size()) + " is not a string");
    out.push_back(id.get<std::string>());
  }
  return out;
}

DatasetMetadata DatasetMetadata::load(const std::string& path) {
  Json j = parse_json_file(path);
  check(j.is_object(), path + ": expected a JSON object");
  DatasetMetadata m;
  auto integer = [&](const char* key) -> int64_t {
    check(j.contains(key), path + ": missing key '" + key + "'");
    check(j[key].is_number_integer(), path + ": '" + key + "' must be an integer");
    return j[key].get<int64_t>();
  };
  m.pad_id = integer("pad_id");
  check(j.contains("ignore_label_id"), path + ": missing key 'ignore_label_id'");
  if (j["ignore_label_id"].is_null())
    m.ignore_label_id.reset();
  else
    m.ignore_label_id = integer("ignore_label_id");
  m.blank_identifier_id = integer("blank_identifier_id");
  m.vocab_size = integer("vocab_size");
  m.seq_len = integer("seq_len");
  m.num_puzzle_identifiers = integer("num_puzzle_identifiers");
  m.total_groups = integer("total_groups");
  check(j.contains("mean_puzzle_examples") && j["mean_puzzle_examples"].is_number(),
        path + ": 'mean_puzzle_examples' must be a number");
  m.mean_puzzle_examples = j["mean_puzzle_examples"].get<double>();
  check(j.contains("sets") && j["sets"].is_array() && !j["sets"].empty(), path + ": 'sets' must be a non-empty list");
  m.sets.clear();
  for (const auto& s : j["sets"]) {
    check(s.is_string(), path + ": 'sets' must hold strings");
    m.sets.push_back(s.get<std::string>());
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const std::vector<std::string> known = {
        "pad_id",  "ignore_label_id",        "blank_identifier_id", "vocab_size",
        "seq_len", "num_puzzle_identifiers", "total_groups",        "mean_puzzle_examples",
        "sets"};
    check(std::find(known.begin(), known.end(), it.key()) != known.end(), path + ": unknown key '" + it.key() + "'");
  }
  check(m.vocab_size >= 1 && m.vocab_size <= 65536, path + ": vocab_size out of range");
  check(m.seq_len >= 1, path + ": seq_len must be >= 1");
  check(m.num_puzzle_identifiers >= 1, path + ": num_puzzle_identifiers must be >= 1");
  check(m.pad_id >= 0 && m.pad_id < m.vocab_size, path + ": pad_id outside the vocabulary");
  check(m.blank_identifier_id >= 0 && m.blank_identifier_id < m.num_puzzle_identifiers,
        path + ": blank_identifier_id outside [0, num_puzzle_identifiers)");
  return m;
}

std::string DatasetMetadata::to_json() const {
  Json j = {{"pad_id", pad_id},
            {"ignore_label_id", ignore_label_id ? Json(*ignore_label_id) : Json(nullptr)},
            {"blank_identifier_id", blank_identifier_id},
            {"vocab_size", vocab_size},
            {"seq_len", seq_len},
            {"num_puzzle_identifiers", num_puzzle_identifiers},
            {"total_groups", total_groups},
            {"mean_puzzle_examples", mean_puzzle_examples},
            {"sets", sets}};
  return j.dump();
}

void write_json_file(const std::string& path, const std::string& json_text) { write_file_atomic(path, json_text); }

DatasetSummary build_blank_identifier_dataset(const std::string& output_dir, bool overwrite, int64_t seq_len,
                                              int64_t vocab_size,
                                              const std::function<void(bool, SplitBuilder&)>& fill) {
  const auto t0 = std::chrono::steady_clock::now();
  DatasetMetadata meta;
  meta.pad_id = 0;
  meta.ignore_label_id = 0;
  meta.blank_identifier_id = 0;
  meta.vocab_size = vocab_size;
  meta.num_puzzle_identifiers = 1;
  DatasetFolder folder(output_dir, overwrite);
  DatasetSummary summary;
  for (const bool is_train : {true, false}) {
    const std::string dir = folder.split_dir(is_train ? "train" : "test");
    SplitBuilder split(seq_len, dir);
    fill(is_train, split);
    split.write(dir, meta);
    (is_train ? summary.train_examples : summary.test_examples) = split.examples();
    (is_train ? summary.train_groups : summary.test_groups) = split.groups();
  }
  write_json_file(folder.path("identifiers.json"), "[\"<blank>\"]");
  folder.commit();
  summary.seq_len = seq_len;
  summary.vocab_size = vocab_size;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

// ------------------------------------------------------------------ builder
struct SplitBuilder::Stream {
  std::string split_dir, set;
  npy::RowWriter inputs, labels;
  Stream(const std::string& dir, const std::string& s, int64_t seq_len)
      : split_dir(dir),
        set(s),
        inputs(dir + "/" + s + "__inputs.npy", torch::kByte, seq_len),
        labels(dir + "/" + s + "__labels.npy", torch::kByte, seq_len) {}
};

SplitBuilder::SplitBuilder(int64_t seq_len) : seq_len_(seq_len) {}

SplitBuilder::SplitBuilder(int64_t seq_len, const std::string& split_dir, const std::string& set) : seq_len_(seq_len) {
  fs::create_directories(split_dir);
  stream_ = std::make_unique<Stream>(split_dir, set, seq_len);
}

SplitBuilder::~SplitBuilder() = default;

void SplitBuilder::add_example(const std::vector<uint8_t>& input, const std::vector<uint8_t>& label) {
  check(static_cast<int64_t>(input.size()) == seq_len_ && static_cast<int64_t>(label.size()) == seq_len_,
        "dataset builder: example of length " + std::to_string(input.size()) + "/" + std::to_string(label.size()) +
            ", expected " + std::to_string(seq_len_));
  if (stream_) {
    stream_->inputs.append(input.data(), 1);
    stream_->labels.append(label.data(), 1);
  } else {
    inputs_.insert(inputs_.end(), input.begin(), input.end());
    labels_.insert(labels_.end(), label.begin(), label.end());
  }
  ++examples_;
}

void SplitBuilder::end_puzzle(int32_t identifier) {
  puzzle_indices_.push_back(static_cast<int32_t>(examples()));
  puzzle_identifiers_.push_back(identifier);
}

void SplitBuilder::end_group() { group_indices_.push_back(static_cast<int32_t>(puzzles())); }

void SplitBuilder::write(const std::string& split_dir, DatasetMetadata m, const std::string& set) {
  check(puzzle_indices_.back() == examples(), "dataset builder: examples added after the last end_puzzle()");
  check(group_indices_.back() == puzzles(), "dataset builder: puzzles added after the last end_group()");
  fs::create_directories(split_dir);
  check(!stream_ || (stream_->split_dir == split_dir && stream_->set == set),
        "dataset builder: streamed to " + (stream_ ? stream_->split_dir : "") + ", written to " + split_dir);
  const int64_t n = examples();
  auto u8 = [&](const std::vector<uint8_t>& v) {
    return torch::from_blob(const_cast<uint8_t*>(v.data()), {n, seq_len_}, torch::kByte);
  };
  auto i32 = [](const std::vector<int32_t>& v) {
    return torch::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt);
  };
  const std::string p = split_dir + "/" + set + "__";
  if (stream_) {
    stream_->inputs.close();
    stream_->labels.close();
  } else {
    npy::save(p + "inputs.npy", u8(inputs_));
    npy::save(p + "labels.npy", u8(labels_));
  }
  npy::save(p + "puzzle_identifiers.npy", i32(puzzle_identifiers_));
  npy::save(p + "puzzle_indices.npy", i32(puzzle_indices_));
  npy::save(p + "group_indices.npy", i32(group_indices_));
  m.seq_len = seq_len_;
  m.total_groups = groups();
  m.mean_puzzle_examples = puzzles() ? static_cast<double>(n) / static_cast<double>(puzzles()) : 0.0;
  m.sets = {set};
  write_json_file(split_dir + "/dataset.json", m.to_json());
}

DatasetFolder::DatasetFolder(std::string final_dir, bool overwrite) : final_dir_(std::move(final_dir)) {
  while (!final_dir_.empty() && final_dir_.back() == '/') final_dir_.pop_back();
  check(!final_dir_.empty(), "dataset: empty output folder");
  if (fs::exists(final_dir_) && !overwrite && !fs::is_empty(final_dir_))
    throw Error(final_dir_ + ": output folder exists and is not empty (remove it or pass --overwrite)");
  const fs::path parent = fs::absolute(final_dir_).parent_path();
  fs::create_directories(parent);
  temp_dir_ =
      (parent / ("." + fs::path(final_dir_).filename().string() + ".tmp." + std::to_string(::getpid()))).string();
  fs::remove_all(temp_dir_);
  fs::create_directories(temp_dir_);
}

DatasetFolder::~DatasetFolder() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_dir_, ec);
  }
}

std::string DatasetFolder::split_dir(const std::string& split) {
  const std::string d = temp_dir_ + "/" + split;
  fs::create_directories(d);
  return d;
}

std::string DatasetFolder::path(const std::string& name) const { return temp_dir_ + "/" + name; }

void DatasetFolder::commit() {
  if (fs::exists(final_dir_)) fs::remove_all(final_dir_);
  fs::rename(temp_dir_, final_dir_);
  committed_ = true;
}

}  // namespace hrm::data
