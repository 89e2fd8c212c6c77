#include "train/criterion.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/safetensors.h"

namespace muongpt {

namespace {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace

nlohmann::json CriterionDecision::to_json() const {
  nlohmann::json ratio = nlohmann::json::object();
  for (const auto& [name, r] : ratios) ratio[name] = number_or_null(r);
  return {{"step", step}, {"threshold", threshold}, {"ratios", ratio}, {"moved", moved}};
}

CriterionDecision CriterionDecision::from_json(const nlohmann::json& j, const std::string& where) {
  auto bad = [&](const char* what) -> CriterionDecision {
    fail(where, "the criterion routing's decision is damaged: ", what);
  };
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) return bad("step");
  if (!j.contains("threshold") || !j["threshold"].is_number()) return bad("threshold");
  if (!j.contains("ratios") || !j["ratios"].is_object()) return bad("ratios");
  if (!j.contains("moved") || !j["moved"].is_array()) return bad("moved");
  CriterionDecision d;
  d.step = j["step"].get<int64_t>();
  d.threshold = j["threshold"].get<double>();
  for (const auto& [name, r] : j["ratios"].items())
    d.ratios.emplace_back(name, r.is_number() ? r.get<double>() : NAN);
  for (const auto& m : j["moved"]) {
    if (!m.is_string()) return bad("moved");
    d.moved.push_back(m.get<std::string>());
  }
  return d;
}

std::vector<std::string> criterion_candidates(const std::vector<Route>& base_routes,
                                              const OptimConfig& cfg, const std::string& file) {
  std::vector<std::string> out;
  for (const Route& r : base_routes) {
    if (r.shape.size() != 2 || r.optimizer == "muon") continue;
    for (const std::string& glob : cfg.criterion.candidates)
      if (glob_match(glob, r.name)) {
        out.push_back(r.name);
        break;
      }
  }
  if (out.empty())
    criterion_config_keys().fail(file, cfg.criterion, "candidates",
                                 "match no 2-D weight that the base routing leaves to AdamW");
  return out;
}

OptimConfig decided_config(const OptimConfig& cfg, const CriterionDecision& decision) {
  OptimConfig out = cfg;
  std::vector<std::string> rules;
  for (const std::string& name : decision.moved) rules.push_back(name + " = muon");
  rules.insert(rules.end(), cfg.rules.begin(), cfg.rules.end());
  out.rules = std::move(rules);
  return out;
}

CriterionProbe::CriterionProbe(std::vector<std::string> candidates)
    : names_(std::move(candidates)), sums_(names_.size(), 0.0), counts_(names_.size(), 0) {}

void CriterionProbe::add(const nlohmann::json& record) {
  const nlohmann::json& weights = record.at("weights");
  for (size_t i = 0; i < names_.size(); ++i) {
    if (!weights.contains(names_[i])) continue;
    const nlohmann::json& w = weights[names_[i]];
    if (w.contains("ratio") && w["ratio"].is_number()) {
      sums_[i] += w["ratio"].get<double>();
      counts_[i] += 1;
    }
  }
}

CriterionDecision CriterionProbe::decide(int64_t step, double threshold) const {
  CriterionDecision d;
  d.step = step;
  d.threshold = threshold;
  for (size_t i = 0; i < names_.size(); ++i) {
    const double mean = counts_[i] > 0 ? sums_[i] / double(counts_[i]) : NAN;
    d.ratios.emplace_back(names_[i], mean);
    if (mean >= threshold) d.moved.push_back(names_[i]);  // false for NaN: never measured
  }
  return d;
}

nlohmann::json CriterionProbe::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < names_.size(); ++i) j[names_[i]] = {sums_[i], counts_[i]};
  return j;
}

void CriterionProbe::restore(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "the criterion routing's probe sums are damaged");
  for (size_t i = 0; i < names_.size(); ++i) {
    const auto it = j.find(names_[i]);
    if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number() ||
        !(*it)[1].is_number_integer())
      fail(where, "the criterion routing's probe sums lack '", names_[i],
           "' (the candidates changed since the checkpoint)");
    sums_[i] = (*it)[0].get<double>();
    counts_[i] = (*it)[1].get<int64_t>();
  }
}

std::unique_ptr<Optimizer> switch_routing(const Optimizer& old, const std::vector<Route>& routes,
                                          const std::vector<ParamSlot>& slots,
                                          const OptimConfig& cfg, Comm* comm,
                                          const std::vector<std::string>& moved) {
  const std::set<std::string> to_muon(moved.begin(), moved.end());
  std::vector<SafetensorsTensor> state;
  for (SafetensorsTensor t : old.state_tensors()) {
    for (const std::string& name : to_muon) {
      if (t.name == "adamw.m." + name) t.name = "muon.buf." + name;  // the momentum carries over
      if (t.name == "adamw.v." + name) t.name.clear();               // Muon keeps no second moment
    }
    if (!t.name.empty()) state.push_back(t);
  }
  nlohmann::json json = old.state_json();
  for (auto& p : json["params"])
    if (to_muon.count(p["name"].get<std::string>())) p["optimizer"] = "muon";
  auto next = Optimizer::create(routes, slots, cfg, comm);
  next->load_state(SafetensorsFile::from_tensors("criterion routing", state), json,
                   "criterion routing");
  return next;
}

}  // namespace muongpt
