// Routing by the criterion (`[optim] routing = "criterion"`, docs/optim.md): the seed paper says a
// spectral update beats a Euclidean one on a block when nr(G) ≥ st(A), G the block's gradient and
// A the activation it multiplies. The run trains its probe window on the base routing with
// telemetry at every step, then moves each candidate whose mean nr(G)/st(A) over the window
// reaches the threshold to Muon, converting its optimizer state, and trains on.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/comm.h"
#include "model/params.h"
#include "optim/config.h"
#include "optim/optimizer.h"
#include "optim/routing.h"

namespace muongpt {

struct CriterionDecision {
  int64_t step = 0;  // the last step of the probe window
  double threshold = 1;
  std::vector<std::pair<std::string, double>> ratios;  // candidate -> mean nr/st (NaN: unmeasured)
  std::vector<std::string> moved;                      // to Muon, in parameter order

  // What routing.json and checkpoints hold; from_json refuses anything else (errors name `where`).
  nlohmann::json to_json() const;
  static CriterionDecision from_json(const nlohmann::json& j, const std::string& where);
};

// The weights the criterion may move: 2-D parameters that a candidate glob matches and the base
// routing does not already send to Muon, in parameter order. Error when there are none.
std::vector<std::string> criterion_candidates(const std::vector<Route>& base_routes,
                                              const OptimConfig& cfg, const std::string& file);

// The optimizer config that routes as decided: a "<name> = muon" rule per moved weight, tried
// before the others (so the routing table says why each weight went where).
OptimConfig decided_config(const OptimConfig& cfg, const CriterionDecision& decision);

// The window's measurements: the sum and count of nr/st per candidate.
class CriterionProbe {
 public:
  explicit CriterionProbe(std::vector<std::string> candidates);
  // One telemetry record (ranks.jsonl's form): its "weights"[name]["ratio"] where a number.
  void add(const nlohmann::json& record);
  CriterionDecision decide(int64_t step, double threshold) const;
  // For checkpoints taken inside the window: a resume decides again from the same sums.
  nlohmann::json to_json() const;
  void restore(const nlohmann::json& j, const std::string& where);

 private:
  std::vector<std::string> names_;
  std::vector<double> sums_;
  std::vector<int64_t> counts_;
};

// A new optimizer for `routes` over the same slots, holding the old one's state: a weight moved
// from AdamW to Muon starts its momentum from AdamW's first moment (both are EMAs of the gradient
// from zero; the second moment is dropped), every other weight keeps its state as it is.
// Collective on several ranks.
std::unique_ptr<Optimizer> switch_routing(const Optimizer& old, const std::vector<Route>& routes,
                                          const std::vector<ParamSlot>& slots,
                                          const OptimConfig& cfg, Comm* comm,
                                          const std::vector<std::string>& moved);

}  // namespace muongpt
