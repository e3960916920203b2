#pragma once
// Exponential moving average of a model's trainable parameters (the published EMAHelper): started from the weights
// at construction and updated after each optimizer step, ema = rate * ema + (1 - rate) * param. Buffers (the puzzle
// embedding table, the initial states) are not averaged.
#include <string>

#include "hrm/model/act.h"

namespace hrm {

class EMA {
 public:
  EMA(ACTModel& model, double rate);
  void update();
  double rate() const { return rate_; }
  // The averages by parameter name.
  const StateDict& weights() const { return ema_; }
  // Replaces the averages; every parameter must be present with its shape (errors name `source` and the key).
  void load(const StateDict& weights, const std::string& source);

 private:
  StateDict params_, ema_;
  double rate_;
};

// While it lives, the model's parameters hold `weights` (e.g. the EMA for an evaluation); the destructor puts the
// model's own values back.
class SwappedWeights {
 public:
  SwappedWeights(ACTModel& model, const StateDict& weights);
  ~SwappedWeights();
  SwappedWeights(const SwappedWeights&) = delete;
  SwappedWeights& operator=(const SwappedWeights&) = delete;

 private:
  StateDict params_, saved_;
};

}  // namespace hrm
