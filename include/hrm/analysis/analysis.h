#pragma once
// The paper's analyses of a trained model, as JSON for `hrm report`: forward residuals within segments (Fig. 3),
// the participation ratio of the high- and low-level states (Fig. 8), and accuracy against the number of segments
// allowed at evaluation (inference-time scaling, Fig. 5c). Every model of the family; states it lacks are absent.
#include <cstdint>
#include <string>
#include <vector>

#include "hrm/data/loader.h"
#include "hrm/model/act.h"

namespace hrm::analysis {

// Forward residuals ||z_t - z_{t-1}|| / ||z_{t-1}|| (L2 over positions and hidden units, averaged over the batch) of
// every update of z_L and of z_H, segment by segment, on one test batch, from a fresh carry in eval mode.
struct Residuals {
  std::vector<std::vector<double>> z_L, z_H;  // [segment][update within the segment]
  int64_t batch_size = 0;
  std::string to_json() const;
};
Residuals forward_residuals(ACTModel& model, const data::PuzzleDataset& test);

// Participation ratio (sum lambda)^2 / sum lambda^2 of the covariance of the states. Pooling (the paper does not
// say): each trajectory (test puzzle, halt_max_steps segments from a fresh carry) contributes its state after every
// update, averaged over positions; the ratio is taken over all of them. Computed as trace(C)^2 / ||C||_F^2.
struct ParticipationRatio {
  double pr_z_H = 0, pr_z_L = -1;  // -1: the model has no z_L
  double untrained_pr_z_H = 0, untrained_pr_z_L = -1;
  struct Point {
    int64_t trajectories;
    double pr_z_H, pr_z_L;
  };
  std::vector<Point> pr_vs_trajectories;  // the trained model with the first k trajectories
  int64_t trajectories = 0;
  std::string to_json() const;
};
// The participation ratio of the covariance of the rows of `states` [n, d]: trace(C)^2 / ||C||_F^2 (= (sum lambda)^2 /
// sum lambda^2); 0 for fewer than two rows.
double participation_ratio_of(const torch::Tensor& states);
ParticipationRatio participation_ratio(ACTModel& trained, ACTModel& untrained, const data::PuzzleDataset& test,
                                       int64_t trajectories);

// One row per halt_max_steps value: the test split's metrics with that many segments at most.
struct Scaling {
  std::vector<int64_t> max_steps;
  std::vector<double> exact_accuracy, accuracy, mean_steps;
  std::string to_json() const;
};
Scaling inference_scaling(const std::string& checkpoint, const std::string& data_dir,
                          const std::vector<int64_t>& max_steps, const std::string& device, int64_t batch_size = 0);

// `hrm analyze residuals|pr|scaling`: runs one analysis of a checkpoint (or a run folder's latest) on the test split
// of its dataset (or data_dir), writes its JSON to json_path (default: RUN_DIR/analysis/KIND.json) and, when the
// checkpoint belongs to a run folder, rewrites that run's report. Returns the JSON path.
struct AnalysisRequest {
  std::string kind;  // residuals | pr | scaling
  std::string checkpoint, data_dir, json_path, device = "auto", weights = "auto";
  int64_t batch_size = 0;                             // residuals: the batch; 0 = the training batch, at most 256
  int64_t trajectories = 100;                         // pr
  std::vector<int64_t> max_steps = {1, 2, 4, 8, 16};  // scaling
};
std::string run_analysis(const AnalysisRequest& request);

// Where analyses of a checkpoint go: RUN_DIR/analysis/NAME.json for a run folder or a checkpoint inside one.
std::string default_analysis_path(const std::string& checkpoint, const std::string& name);

}  // namespace hrm::analysis
