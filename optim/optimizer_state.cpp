#include "optim/optimizer_state.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "optim/schedule.h"

namespace muongpt {

namespace {

constexpr const char* kStateFormat = "muongpt-optimizer";
constexpr int kStateVersion = 1;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

AdamWConsts adamw_consts(const AdamWConfig& a, double lr, double wd, int64_t t) {
  AdamWConsts k;
  k.one_minus_beta1 = float(1.0 - a.beta1);
  k.beta2 = float(a.beta2);
  k.one_minus_beta2 = float(1.0 - a.beta2);
  k.decay = float(1.0 - lr * wd);
  k.step_size = float(lr / (1.0 - std::pow(a.beta1, double(t))));
  k.sqrt_bc2 = float(std::sqrt(1.0 - std::pow(a.beta2, double(t))));
  k.eps = float(a.eps);
  return k;
}

std::vector<std::string> state_tensor_names(const StateParam& p) {
  if (p.muon) return {"muon.buf." + p.name};
  return {"adamw.m." + p.name, "adamw.v." + p.name};
}

nlohmann::json optimizer_state_json(const std::vector<StateParam>& params, int64_t steps_taken,
                                    int64_t last_step) {
  nlohmann::json list = nlohmann::json::array();
  for (const StateParam& p : params)
    list.push_back(
        {{"name", p.name}, {"optimizer", p.muon ? "muon" : "adamw"}, {"shape", p.shape}});
  return {{"format", kStateFormat},
          {"version", kStateVersion},
          {"steps_taken", steps_taken},
          {"last_step", last_step},
          {"params", list}};
}

StateCounters check_optimizer_state(const SafetensorsFile& file, const nlohmann::json& json,
                                    const std::vector<StateParam>& params,
                                    const std::string& where) {
  StateCounters counters;
  try {
    if (json.at("format") != kStateFormat || json.at("version") != kStateVersion)
      fail(where, "optimizer state: format ", json.at("format").dump(), " version ",
           json.at("version").dump(), ", expected \"", kStateFormat, "\" version ", kStateVersion);
    const auto& saved = json.at("params");
    if (!saved.is_array()) fail(where, "optimizer state: 'params' is not a list");
    if (saved.size() != params.size())
      fail(where, "optimizer state holds ", saved.size(), " parameters, the model has ",
           params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const StateParam& p = params[i];
      const std::string name = saved[i].at("name");
      const std::string opt = saved[i].at("optimizer");
      const auto shape = saved[i].at("shape").get<std::vector<int64_t>>();
      const std::string now = p.muon ? "muon" : "adamw";
      if (name != p.name)
        fail(where, "optimizer state parameter ", i, " is '", name, "', the model's is '", p.name,
             "'");
      if (opt != now)
        fail(where, "parameter '", name, "' was trained with ", opt,
             " but the routing now sends it to ", now, " (its optimizer state cannot carry over)");
      if (shape != p.shape)
        fail(where, "parameter '", name, "' has another shape in the optimizer state");
    }
    counters.steps_taken = json.at("steps_taken").get<int64_t>();
    counters.last_step = json.at("last_step").get<int64_t>();
    if (counters.steps_taken < 0 || counters.last_step < -1)
      fail(where, "optimizer state: steps_taken ", counters.steps_taken, " and last_step ",
           counters.last_step, " are not counts of steps");
  } catch (const nlohmann::json::exception& e) {
    fail(where, "optimizer state JSON: ", untagged(e));
  }

  std::set<std::string> expected;
  for (const StateParam& p : params)
    for (const std::string& name : state_tensor_names(p)) expected.insert(name);
  for (const std::string& name : file.names())
    if ((name.starts_with("adamw.") || name.starts_with("muon.")) && !expected.count(name))
      fail(where, "unexpected optimizer tensor '", name, "' (the routing or model differs)");
  return counters;
}

std::vector<float> read_state_tensor(const SafetensorsFile& file, const std::string& name,
                                     const std::vector<int64_t>& shape, const std::string& where) {
  if (!file.has(name)) fail(where, "missing optimizer tensor '", name, "'");
  const SafetensorsEntry& e = file.entry(name);
  if (e.dtype != DType::f32)
    fail(where, "optimizer tensor '", name, "' is ", dtype_name(e.dtype), ", expected F32");
  if (e.shape != shape)
    fail(where, "optimizer tensor '", name, "' has shape ", shape_str(e.shape),
         ", the parameter has ", shape_str(shape));
  std::vector<float> v = file.read<float>(name);
  if (!std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }))
    fail(where, "optimizer tensor '", name, "' holds a NaN or an Inf (a diverged run's state)");
  return v;
}

StepStats begin_step_stats(const MuonConfig& muon, int64_t step, double lr_scale) {
  MG_CHECK(step >= 0, "optimizer step ", step);
  StepStats stats;
  stats.step = step;
  stats.lr_scale = lr_scale;
  stats.muon_momentum = muon_momentum(muon, step);
  return stats;
}

}  // namespace muongpt
