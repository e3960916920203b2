#include "hrm/eval/arc_vote.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "../data/json_file.h"
#include "hrm/data/arc.h"
#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm {
using Json = nlohmann::json;

ArcVoteResult arc_vote(const std::string& dir, const EvalOutput& out) {
  const std::string ids_path = dir + "/identifiers.json", puzzles_path = dir + "/test_puzzles.json";
  const std::vector<std::string> identifiers = data::read_identifiers(ids_path);
  Json puzzles = data::parse_json_file(puzzles_path);
  check(puzzles.is_object(), puzzles_path + ": expected an object of ARC tasks");
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
    check(id >= 0 && id < static_cast<int>(identifiers.size()),
          ids_path + ": identifier " + std::to_string(id) + " missing");
    const std::string& name = identifiers[static_cast<size_t>(id)];
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
    check(it->is_object() && it->contains("test") && (*it)["test"].is_array(),
          puzzles_path + ": task '" + it.key() + "' has no 'test' list");
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
      check(tests[t].is_object() && tests[t].contains("output"),
            puzzles_path + ": task '" + task + "' test " + std::to_string(t) + " has no 'output'");
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
