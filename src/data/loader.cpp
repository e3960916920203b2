#include "hrm/data/loader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <climits>
#include <filesystem>
#include <numeric>

#include "hrm/data/npy.h"
#include "hrm/util/error.h"

namespace hrm::data {
namespace fs = std::filesystem;

// ------------------------------------------------------------------ memory-mapped npy
class NpyMap {
 public:
  explicit NpyMap(const std::string& path) : path_(path) {
    header_ = npy::read_header(path);
    const int fd = ::open(path.c_str(), O_RDONLY);
    check(fd >= 0, "cannot open " + path);
    struct stat st {};
    ::fstat(fd, &st);
    size_ = static_cast<size_t>(st.st_size);
    const size_t need = header_.data_offset + static_cast<size_t>(header_.numel()) * c10::elementSize(header_.dtype);
    if (size_ != need) {
      ::close(fd);
      throw Error(path + ": file size " + std::to_string(size_) + " does not match its header (expected " +
                  std::to_string(need) + " bytes)");
    }
    base_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    check(base_ != MAP_FAILED, "cannot map " + path);
  }
  ~NpyMap() {
    if (base_ && base_ != MAP_FAILED) ::munmap(base_, size_);
  }
  const npy::Header& header() const { return header_; }
  const std::string& path() const { return path_; }
  int64_t rows() const { return header_.shape.empty() ? 1 : header_.shape[0]; }
  int64_t row_len() const { return header_.shape.size() > 1 ? header_.shape[1] : 1; }

  // Copies elements [offset, offset + n) as int64 into out.
  template <typename Out>
  void read(int64_t offset, int64_t n, Out* out) const {
    const char* data = static_cast<const char*>(base_) + header_.data_offset;
    switch (header_.dtype) {
#define HRM_CASE(ST, T)                                              \
  case ST: {                                                         \
    const T* p = reinterpret_cast<const T*>(data) + offset;          \
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(p[i]); \
    break;                                                           \
  }
      HRM_CASE(torch::kByte, uint8_t)
      HRM_CASE(torch::kChar, int8_t)
      HRM_CASE(torch::kShort, int16_t)
      HRM_CASE(torch::kInt, int32_t)
      HRM_CASE(torch::kLong, int64_t)
#undef HRM_CASE
      default: throw Error(path_ + ": expected an integer array, got " + header_.descr);
    }
  }
  std::vector<int64_t> all() const {
    std::vector<int64_t> v(static_cast<size_t>(header_.numel()));
    read(0, header_.numel(), v.data());
    return v;
  }

 private:
  std::string path_;
  npy::Header header_;
  void* base_ = nullptr;
  size_t size_ = 0;
};

struct PuzzleDataset::Set {
  std::string name;
  std::unique_ptr<NpyMap> inputs, labels;
  std::vector<int64_t> puzzle_identifiers, puzzle_indices, group_indices;
};

namespace {
void check_offsets(const std::vector<int64_t>& v, int64_t end, const std::string& what) {
  check(!v.empty() && v.front() == 0, what + ": offsets must start at 0");
  check(v.back() == end, what + ": offsets must end at " + std::to_string(end) + ", got " + std::to_string(v.back()));
  for (size_t i = 1; i < v.size(); ++i)
    check(v[i] >= v[i - 1], what + ": offsets decrease at position " + std::to_string(i));
}
}  // namespace

PuzzleDataset::PuzzleDataset(LoaderConfig config) : config_(std::move(config)) {
  check(config_.world_size >= 1 && config_.rank >= 0 && config_.rank < config_.world_size,
        "loader: rank must be in [0, world_size)");
  check(config_.global_batch_size >= 1 && config_.global_batch_size % config_.world_size == 0,
        "loader: global batch size " + std::to_string(config_.global_batch_size) +
            " must be a multiple of world size " + std::to_string(config_.world_size));
  check(config_.epochs_per_iter >= 1, "loader: epochs_per_iter must be >= 1");
  const std::string dir = config_.dataset_path + "/" + config_.split;
  check(fs::is_directory(dir), dir + ": no such dataset split folder");
  metadata_ = DatasetMetadata::load(dir + "/dataset.json");
  for (const auto& name : metadata_.sets) {
    auto set = std::make_unique<Set>();
    set->name = name;
    const std::string p = dir + "/" + name + "__";
    set->inputs = std::make_unique<NpyMap>(p + "inputs.npy");
    set->labels = std::make_unique<NpyMap>(p + "labels.npy");
    for (const NpyMap* m : {set->inputs.get(), set->labels.get()}) {
      check(m->header().shape.size() == 2 && m->header().shape[1] == metadata_.seq_len,
            m->path() + ": expected shape [examples, " + std::to_string(metadata_.seq_len) + "]");
    }
    check(set->inputs->rows() == set->labels->rows(), p + "labels.npy: example count differs from inputs");
    set->puzzle_identifiers = NpyMap(p + "puzzle_identifiers.npy").all();
    set->puzzle_indices = NpyMap(p + "puzzle_indices.npy").all();
    set->group_indices = NpyMap(p + "group_indices.npy").all();
    const int64_t n = set->inputs->rows(), puzzles = static_cast<int64_t>(set->puzzle_identifiers.size());
    check(static_cast<int64_t>(set->puzzle_indices.size()) == puzzles + 1,
          p + "puzzle_indices.npy: expected " + std::to_string(puzzles + 1) + " entries");
    check_offsets(set->puzzle_indices, n, p + "puzzle_indices.npy");
    check_offsets(set->group_indices, puzzles, p + "group_indices.npy");
    for (auto id : set->puzzle_identifiers)
      check(id >= 0 && id < metadata_.num_puzzle_identifiers,
            p + "puzzle_identifiers.npy: identifier " + std::to_string(id) + " outside [0, " +
                std::to_string(metadata_.num_puzzle_identifiers) + ")");
    // Token ranges (one pass over the mapped files, row by row).
    std::vector<int64_t> row(static_cast<size_t>(metadata_.seq_len));
    for (int64_t r = 0; r < n; ++r) {
      set->inputs->read(r * metadata_.seq_len, metadata_.seq_len, row.data());
      for (auto t : row)
        if (t < 0 || t >= metadata_.vocab_size)
          throw Error(p + "inputs.npy: example " + std::to_string(r) + " has token " + std::to_string(t) +
                      " outside the vocabulary [0, " + std::to_string(metadata_.vocab_size) + ")");
      set->labels->read(r * metadata_.seq_len, metadata_.seq_len, row.data());
      for (auto t : row)
        if ((t < 0 || t >= metadata_.vocab_size) && !(metadata_.ignore_label_id && t == *metadata_.ignore_label_id))
          throw Error(p + "labels.npy: example " + std::to_string(r) + " has label " + std::to_string(t) +
                      " outside the vocabulary [0, " + std::to_string(metadata_.vocab_size) + ")");
    }
    sets_.push_back(std::move(set));
  }
}

PuzzleDataset::~PuzzleDataset() = default;

int64_t PuzzleDataset::num_examples() const {
  int64_t n = 0;
  for (const auto& s : sets_) n += s->inputs->rows();
  return n;
}

LoadedBatch PuzzleDataset::collate(const Set& set, const std::vector<int64_t>& examples,
                                   const std::vector<int64_t>& puzzles, int64_t effective) const {
  const int64_t B = local_batch_size(), S = metadata_.seq_len;
  LoadedBatch out;
  out.set_name = set.name;
  out.effective_size = effective;
  torch::Tensor inputs = torch::full({B, S}, metadata_.pad_id, torch::kInt);
  torch::Tensor labels = torch::full({B, S}, kIgnoreLabel, torch::kInt);
  torch::Tensor ids = torch::full({B}, metadata_.blank_identifier_id, torch::kInt);
  int32_t* in = inputs.data_ptr<int32_t>();
  int32_t* lab = labels.data_ptr<int32_t>();
  int32_t* id = ids.data_ptr<int32_t>();
  const int64_t ignore = metadata_.ignore_label_id.value_or(INT64_MIN);
  for (size_t i = 0; i < examples.size(); ++i) {
    set.inputs->read(examples[i] * S, S, in + i * S);
    set.labels->read(examples[i] * S, S, lab + i * S);
    for (int64_t t = 0; t < S; ++t)
      if (lab[i * S + t] == ignore) lab[i * S + t] = static_cast<int32_t>(kIgnoreLabel);
    id[i] = static_cast<int32_t>(set.puzzle_identifiers[static_cast<size_t>(puzzles[i])]);
  }
  out.batch = Batch{inputs, labels, ids, config_.global_batch_size, config_.rank * local_batch_size()};
  return out;
}

void PuzzleDataset::for_each_batch(int64_t iteration, const std::function<bool(LoadedBatch&&)>& emit) const {
  const int64_t GB = config_.global_batch_size, local = local_batch_size();
  const int64_t lo = config_.rank * local, hi = lo + local;
  if (config_.test_mode) {
    for (const auto& set : sets_) {
      const int64_t n = set->inputs->rows();
      for (int64_t start = 0; start < n; start += GB) {
        const int64_t end = std::min(n, start + GB);
        std::vector<int64_t> examples, puzzles;
        for (int64_t e = start + lo; e < std::min(end, start + hi); ++e) {
          examples.push_back(e);
          const auto it = std::upper_bound(set->puzzle_indices.begin(), set->puzzle_indices.end(), e);
          puzzles.push_back(static_cast<int64_t>(it - set->puzzle_indices.begin()) - 1);
        }
        if (!emit(collate(*set, examples, puzzles, end - start))) return;
      }
    }
    return;
  }
  for (const auto& set : sets_) {
    const int64_t groups = static_cast<int64_t>(set->group_indices.size()) - 1;
    if (groups <= 0) continue;
    std::mt19937_64 rng(config_.seed + static_cast<uint64_t>(iteration) * 0x9E3779B97F4A7C15ull +
                        std::hash<std::string>{}(set->name));
    std::vector<int64_t> order;
    for (int64_t e = 0; e < config_.epochs_per_iter; ++e) {
      std::vector<int64_t> perm(static_cast<size_t>(groups));
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      order.insert(order.end(), perm.begin(), perm.end());
    }
    size_t pos = 0;
    while (pos < order.size()) {
      std::vector<int64_t> examples, puzzles;
      while (pos < order.size() && static_cast<int64_t>(examples.size()) < GB) {
        const int64_t g = order[pos++];
        const int64_t first = set->group_indices[g], last = set->group_indices[g + 1];
        if (last <= first) continue;
        const int64_t p = std::uniform_int_distribution<int64_t>(first, last - 1)(rng);
        const int64_t ps = set->puzzle_indices[p], size = set->puzzle_indices[p + 1] - ps;
        const int64_t take = std::min(size, GB - static_cast<int64_t>(examples.size()));
        // A random subset of the puzzle's examples when it overflows the batch.
        std::vector<int64_t> idx(static_cast<size_t>(size));
        std::iota(idx.begin(), idx.end(), ps);
        for (int64_t k = 0; k < take; ++k) {
          std::swap(idx[k], idx[std::uniform_int_distribution<int64_t>(k, size - 1)(rng)]);
          examples.push_back(idx[k]);
          puzzles.push_back(p);
        }
      }
      if (static_cast<int64_t>(examples.size()) < GB) break;  // drop the last incomplete batch
      const std::vector<int64_t> my_examples(examples.begin() + lo, examples.begin() + hi);
      const std::vector<int64_t> my_puzzles(puzzles.begin() + lo, puzzles.begin() + hi);
      if (!emit(collate(*set, my_examples, my_puzzles, GB))) return;
    }
  }
}

std::vector<LoadedBatch> PuzzleDataset::iteration_batches(int64_t iteration) const {
  std::vector<LoadedBatch> out;
  for_each_batch(iteration, [&](LoadedBatch&& b) {
    out.push_back(std::move(b));
    return true;
  });
  return out;
}

// ------------------------------------------------------------------ background loader
BackgroundLoader::BackgroundLoader(std::shared_ptr<const PuzzleDataset> dataset, int64_t first_iteration,
                                   size_t capacity, int64_t num_iterations)
    : dataset_(std::move(dataset)),
      iteration_(first_iteration),
      capacity_(std::max<size_t>(1, capacity)),
      num_iterations_(num_iterations) {
  thread_ = std::thread([this] { run(); });
}

BackgroundLoader::~BackgroundLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundLoader::run() {
  try {
    const bool test = dataset_->config().test_mode;
    for (int64_t it = iteration_;; ++it) {
      bool any = false;
      dataset_->for_each_batch(it, [&](LoadedBatch&& b) {
        any = true;
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || queue_.size() < capacity_; });
        if (stop_) return false;
        queue_.emplace_back(it, std::move(b));
        cv_.notify_all();
        return true;
      });
      std::unique_lock<std::mutex> lock(mutex_);
      if (stop_) return;
      const bool last = num_iterations_ >= 0 && it + 1 >= iteration_ + num_iterations_;
      if (test || !any || last) {
        if (!any && !test)
          error_ = "the training split has no full batch of " + std::to_string(dataset_->config().global_batch_size) +
                   " examples";
        queue_.emplace_back(it, std::nullopt);  // end of data
        cv_.notify_all();
        return;
      }
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = e.what();
    queue_.emplace_back(-1, std::nullopt);
    cv_.notify_all();
  }
}

std::optional<LoadedBatch> BackgroundLoader::next(int64_t* iteration) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !queue_.empty(); });
  auto [it, batch] = std::move(queue_.front());
  if (!batch) {
    if (!error_.empty()) throw Error("loader: " + error_);
    return std::nullopt;  // keep the end marker for later calls
  }
  queue_.pop_front();
  cv_.notify_all();
  if (iteration) *iteration = it;
  return batch;
}

}  // namespace hrm::data
