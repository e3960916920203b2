#include "hrm/eval/evaluate.h"

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "hrm/data/arc.h"
#include "hrm/data/maze.h"
#include "hrm/data/sudoku.h"
#include "hrm/util/error.h"
#include "hrm/util/progress.h"
#include "hrm/train/state_dict.h"
#include "hrm/train/trainer.h"

namespace hrm {
namespace fs = std::filesystem;
using Json = nlohmann::json;

InferenceSetup load_for_inference(const std::string& checkpoint_or_run, const std::string& data_dir,
                                  const std::string& config_path, const std::vector<std::string>& overrides,
                                  const std::string& device) {
  // A run folder means its latest checkpoint.
  const std::string checkpoint =
      fs::is_directory(checkpoint_or_run) ? latest_checkpoint(checkpoint_or_run) : checkpoint_or_run;
  InferenceSetup out;
  TrainConfig cfg;
  StateDict weights;
  ModelConfig model_config;
  bool ours = false;
  try {
    LoadedCheckpoint ck = read_checkpoint(checkpoint);
    ours = true;
    model_config = ck.config;
    weights = std::move(ck.model);
    if (ck.text.count("train_config")) cfg = TrainConfig::from_yaml(ck.text["train_config"], checkpoint + " (train_config)");
    cfg.arch = model_config;
  } catch (const Error&) {
    if (config_path.empty()) throw;  // not ours: with a config it is read as a published state dict below
  }
  if (!config_path.empty()) {
    const TrainConfig given = TrainConfig::load(config_path);
    if (!ours) cfg = given;
    else cfg.loss_type = given.loss_type;
  }
  if (!data_dir.empty()) cfg.data_path = data_dir;
  check(!cfg.data_path.empty(), checkpoint + ": no dataset known for this checkpoint (give --data DIR)");
  if (!ours) {
    // A published state dict: the model config comes from the YAML and the dataset.
    const auto meta = data::DatasetMetadata::load(cfg.data_path + "/test/dataset.json");
    model_config = cfg.arch;
    model_config.batch_size = cfg.global_batch_size;
    model_config.seq_len = meta.seq_len;
    model_config.vocab_size = meta.vocab_size;
    model_config.num_puzzle_identifiers = meta.num_puzzle_identifiers;
    weights = load_reference_state_dict(checkpoint);
  }
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    check(eq != std::string::npos, "expected key=value, got '" + o + "'");
    std::string k = o.substr(0, eq);
    if (k == "arch.loss_type") {
      cfg.loss_type = o.substr(eq + 1);
      continue;
    }
    if (k.rfind("arch.", 0) == 0) k = k.substr(5);
    model_config.set(k, o.substr(eq + 1), "command line");
  }
  model_config.validate("command line");
  {
    const std::string meta_path = cfg.data_path + "/test/dataset.json";
    const auto meta = data::DatasetMetadata::load(meta_path);
    if (meta.seq_len != model_config.seq_len || meta.vocab_size != model_config.vocab_size ||
        meta.num_puzzle_identifiers > model_config.num_puzzle_identifiers)
      throw Error(checkpoint + " is incompatible with " + cfg.data_path + ": the model has seq_len " +
                  std::to_string(model_config.seq_len) + ", vocab " + std::to_string(model_config.vocab_size) + ", " +
                  std::to_string(model_config.num_puzzle_identifiers) + " puzzle identifiers; the dataset has " +
                  std::to_string(meta.seq_len) + ", " + std::to_string(meta.vocab_size) + ", " +
                  std::to_string(meta.num_puzzle_identifiers));
  }
  out.model = HRM(model_config);
  load_model_state(out.model, weights, checkpoint);
  out.model->to(torch::Device(device));
  out.data_path = cfg.data_path;
  out.loss_type = loss_type_from_string(cfg.loss_type);
  out.global_batch_size = cfg.global_batch_size;
  return out;
}

EvalOutput evaluate(HRM& model, const data::PuzzleDataset& test, LossType loss_type, bool progress) {
  check(test.config().test_mode, "evaluate: the dataset must be opened in test mode");
  model->eval();
  torch::NoGradGuard no_grad;
  const auto device = model->device();
  std::map<std::string, double> sums;
  std::vector<torch::Tensor> inputs, labels, preds, qh, ids;
  const int64_t total = (test.num_examples() + test.config().global_batch_size - 1) / test.config().global_batch_size;
  ProgressBar bar("eval", total, progress);
  test.for_each_batch(0, [&](data::LoadedBatch&& lb) {
    const Batch batch = lb.batch.to(device);
    Carry carry = model->initial_carry(batch);
    ACTOutputs out;
    for (int64_t s = 0; s < model->config().halt_max_steps; ++s) {
      auto [next, o] = model->forward(carry, batch);
      carry = std::move(next);
      out = std::move(o);
      if (carry.halted.all().item<bool>()) break;
    }
    const LossOutput loss = act_loss(carry, out, loss_type);
    for (const auto& [k, v] : loss.metrics) sums[k] += v.to(torch::kDouble).item<double>();
    const int64_t real = std::min<int64_t>(lb.batch.size(), lb.effective_size);
    inputs.push_back(lb.batch.inputs.narrow(0, 0, real));
    labels.push_back(lb.batch.labels.narrow(0, 0, real));
    preds.push_back(out.logits.argmax(-1).to(torch::kInt).to(torch::kCPU).narrow(0, 0, real));
    qh.push_back(out.q_halt_logits.to(torch::kCPU).narrow(0, 0, real));
    ids.push_back(lb.batch.puzzle_identifiers.narrow(0, 0, real));
    bar.add();
    return true;
  });
  bar.finish();
  EvalOutput r;
  const double count = std::max(1.0, sums["count"]);
  r.metrics["count"] = sums["count"];
  for (const auto& [k, v] : sums)
    if (k != "count") r.metrics[k] = v / count;
  if (!inputs.empty()) {
    r.inputs = torch::cat(inputs);
    r.labels = torch::cat(labels);
    r.predictions = torch::cat(preds);
    r.q_halt_logits = torch::cat(qh);
    r.puzzle_identifiers = torch::cat(ids);
  }
  return r;
}

TaskKind detect_task_kind(const std::string& dir, const data::DatasetMetadata& m) {
  if (fs::exists(dir + "/test_puzzles.json") && m.seq_len == 900 && m.vocab_size == 12) return TaskKind::Arc;
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(static_cast<double>(m.seq_len))));
  if (side * side == m.seq_len && (side == 4 || side == 6 || side == 9) && m.vocab_size == side + 2)
    return TaskKind::Sudoku;
  if (side * side == m.seq_len && m.vocab_size == 6) return TaskKind::Maze;
  return TaskKind::Generic;
}

std::string to_string(TaskKind kind) {
  switch (kind) {
    case TaskKind::Sudoku: return "sudoku";
    case TaskKind::Maze: return "maze";
    case TaskKind::Arc: return "arc";
    default: return "generic";
  }
}

void add_checker_metrics(TaskKind kind, const EvalOutput& out, std::map<std::string, double>* metrics) {
  if (!out.predictions.defined() || (kind != TaskKind::Sudoku && kind != TaskKind::Maze)) return;
  const int64_t n = out.predictions.size(0), S = out.predictions.size(1);
  const int side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(S))));
  int64_t valid = 0;
  const auto in = out.inputs.accessor<int32_t, 2>(), pred = out.predictions.accessor<int32_t, 2>();
  for (int64_t i = 0; i < n; ++i) {
    if (kind == TaskKind::Sudoku) {
      const auto shape = data::SudokuShape::of(side);
      data::SudokuGrid q(static_cast<size_t>(S)), p(static_cast<size_t>(S));
      for (int64_t c = 0; c < S; ++c) {
        q[c] = static_cast<uint8_t>(std::max(0, in[i][c] - 1));
        p[c] = static_cast<uint8_t>(std::clamp(pred[i][c] - 1, 0, 255));
      }
      valid += data::is_valid_sudoku_solution(shape, q, p);
    } else {
      static const char* alphabet = "?# SGo";
      std::string q, p;
      for (int64_t c = 0; c < S; ++c) {
        q += alphabet[std::clamp(in[i][c], 0, 5)];
        p += alphabet[std::clamp(pred[i][c], 0, 5)];
      }
      try {
        valid += data::is_valid_maze_solution(side, q, p);
      } catch (const Error&) {
      }
    }
  }
  (*metrics)["valid_solutions"] = n ? static_cast<double>(valid) / static_cast<double>(n) : 0.0;
}

ArcVoteResult arc_vote(const std::string& dir, const EvalOutput& out) {
  const std::string ids_path = dir + "/identifiers.json", puzzles_path = dir + "/test_puzzles.json";
  Json identifiers, puzzles;
  try {
    identifiers = Json::parse(read_file(ids_path));
    puzzles = Json::parse(read_file(puzzles_path));
  } catch (const Json::exception& e) {
    throw Error(dir + ": invalid identifiers.json or test_puzzles.json: " + e.what());
  }
  // (task, test index) -> grid key -> (votes, sum of halting probabilities, grid)
  struct Candidate {
    int64_t votes = 0;
    double q_sum = 0;
    data::ArcGrid grid;
  };
  std::map<std::pair<std::string, int>, std::map<std::string, Candidate>> votes;
  std::map<int, int> seen_per_identifier;
  const int64_t n = out.predictions.defined() ? out.predictions.size(0) : 0;
  const torch::Tensor pred_t = n ? out.predictions.to(torch::kInt).contiguous() : torch::Tensor();
  const torch::Tensor ids_t = n ? out.puzzle_identifiers.to(torch::kInt).contiguous() : torch::Tensor();
  const torch::Tensor q_t = n ? out.q_halt_logits.to(torch::kDouble).contiguous() : torch::Tensor();
  for (int64_t i = 0; i < n; ++i) {
    const int id = ids_t.data_ptr<int32_t>()[i];
    check(id >= 0 && id < static_cast<int>(identifiers.size()), ids_path + ": identifier " + std::to_string(id) + " missing");
    const std::string name = identifiers[id].get<std::string>();
    std::string task = name;
    data::ArcAugment aug;
    if (!data::ArcAugment::parse(name, &task, &aug)) aug = data::ArcAugment{};
    const int index = seen_per_identifier[id]++;
    const int64_t S = pred_t.size(1);
    const int32_t* row = pred_t.data_ptr<int32_t>() + i * S;
    std::vector<uint8_t> tokens(static_cast<size_t>(S));
    for (int64_t c = 0; c < S; ++c) tokens[c] = static_cast<uint8_t>(std::clamp(row[c], 0, 255));
    const data::ArcGrid grid = aug.invert(data::crop_arc_grid(tokens));
    std::string key = std::to_string(grid.rows) + "x" + std::to_string(grid.cols) + ":";
    for (auto v : grid.cells) key += static_cast<char>('0' + v);
    Candidate& c = votes[{task, index}][key];
    c.votes += 1;
    c.q_sum += 1.0 / (1.0 + std::exp(-q_t.data_ptr<double>()[i]));
    c.grid = grid;
  }
  ArcVoteResult r;
  const std::vector<int> ks = {1, 2, 5, 10, 100, 1000};
  std::map<int, int64_t> correct;
  Json submission = Json::object();
  for (auto it = puzzles.begin(); it != puzzles.end(); ++it) {
    const std::string task = it.key();
    const Json& tests = (*it)["test"];
    Json attempts = Json::array();
    for (size_t t = 0; t < tests.size(); ++t) {
      ++r.test_inputs;
      std::vector<const Candidate*> ranked;
      auto v = votes.find({task, static_cast<int>(t)});
      if (v != votes.end())
        for (const auto& [k, c] : v->second) ranked.push_back(&c);
      std::sort(ranked.begin(), ranked.end(), [](const Candidate* a, const Candidate* b) {
        if (a->votes != b->votes) return a->votes > b->votes;
        return a->q_sum / a->votes > b->q_sum / b->votes;
      });
      const data::ArcGrid truth = data::parse_arc_grid(tests[t]["output"].dump(), puzzles_path + ": " + task);
      for (int k : ks) {
        for (size_t j = 0; j < ranked.size() && j < static_cast<size_t>(k); ++j)
          if (ranked[j]->grid == truth) {
            ++correct[k];
            break;
          }
      }
      auto to_json = [](const data::ArcGrid& g) { return Json::parse(data::arc_grid_to_json(g)); };
      Json a = Json::object();
      a["attempt_1"] = ranked.size() > 0 ? to_json(ranked[0]->grid) : Json::array({Json::array({0})});
      a["attempt_2"] = ranked.size() > 1 ? to_json(ranked[1]->grid) : a["attempt_1"];
      attempts.push_back(a);
    }
    submission[task] = attempts;
  }
  for (int k : ks)
    r.pass_at["pass@" + std::to_string(k)] =
        r.test_inputs ? static_cast<double>(correct[k]) / static_cast<double>(r.test_inputs) : 0.0;
  r.submission_json = submission.dump();
  return r;
}

}  // namespace hrm
