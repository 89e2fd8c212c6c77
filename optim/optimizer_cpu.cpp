// The CPU optimizer: AdamW and Muon over fp32 parameters, fp32 state. Every buffer (moments,
// momentum, Muon scratch, dualizer workspace after its first use) is allocated up front or on the
// first step, never again.
#include "optim/optimizer_cpu.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "optim/dualizer.h"
#include "optim/schedule.h"
#include "optim/update_math.h"

namespace muongpt {

namespace {

constexpr const char* kStateFormat = "muongpt-optimizer";
constexpr int kStateVersion = 1;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class CpuOptimizer final : public Optimizer {
 public:
  CpuOptimizer(const std::vector<Route>& routes, const std::vector<ParamSlot>& slots,
               const OptimConfig& cfg)
      : Optimizer(routes), cfg_(cfg) {
    DualizerSpec ns_default;
    ns_default.coeffs = parse_ns_coeffs(cfg.muon.ns_coeffs, "optim", "[optim.muon] ns_coeffs");
    ns_default.ns_steps = static_cast<int>(cfg.muon.ns_steps);
    ns_default.ns_eps = cfg.muon.ns_eps;
    int64_t largest_matrix = 0;
    for (size_t i = 0; i < routes.size(); ++i) {
      Param p;
      p.slot = slots[i];
      p.muon = routes[i].optimizer == "muon";
      const int64_t n = p.slot.numel();
      if (p.muon) {
        p.dualizer = parse_dualizer(routes[i].dualizer, ns_default, "optim",
                                    "parameter '" + routes[i].name + "'");
        p.buf.assign(size_t(n), 0.0f);
        largest_matrix = std::max(largest_matrix, n);
      } else {
        p.m.assign(size_t(n), 0.0f);
        p.v.assign(size_t(n), 0.0f);
      }
      params_.push_back(std::move(p));
    }
    u_.assign(size_t(largest_matrix), 0.0f);
    o_.assign(size_t(largest_matrix), 0.0f);
  }

  void step(int64_t step, double lr_scale) override {
    MG_CHECK(step >= 0, "optimizer step ", step);
    stats_ = StepStats{};
    stats_.step = step;
    stats_.lr_scale = lr_scale;
    const double mu = muon_momentum(cfg_.muon, step);
    stats_.muon_momentum = mu;
    recorded_ = record_;
    for (size_t i = 0; i < params_.size(); ++i) {
      Param& p = params_[i];
      const Route& r = routes_[i];
      const int64_t n = p.slot.numel();
      float* w = p.slot.value;
      if (recorded_) {
        p.update.resize(size_t(n));
        std::copy(w, w + n, p.update.begin());
      }
      const double lr = r.lr * lr_scale;
      if (p.muon) {
        muon_update(p, r, lr, mu);
        ++stats_.muon_params;
      } else {
        adamw_update(p, r, lr, step + 1);
        ++stats_.adamw_params;
      }
      if (recorded_)
        for (int64_t j = 0; j < n; ++j) p.update[size_t(j)] = w[j] - p.update[size_t(j)];
    }
    ++steps_taken_;
  }

  double reduce_gradients(bool) override {
    double ss = 0;
    for (const Param& p : params_)
      for (int64_t j = 0; j < p.slot.numel(); ++j) ss += double(p.slot.grad[j]) * p.slot.grad[j];
    return std::sqrt(ss);
  }

  std::vector<SafetensorsTensor> state_tensors() const override {
    std::vector<SafetensorsTensor> out;
    for (const Param& p : params_) {
      if (p.muon) {
        out.push_back({"muon.buf." + p.slot.name, DType::f32, p.slot.shape, p.buf.data()});
      } else {
        out.push_back({"adamw.m." + p.slot.name, DType::f32, p.slot.shape, p.m.data()});
        out.push_back({"adamw.v." + p.slot.name, DType::f32, p.slot.shape, p.v.data()});
      }
    }
    return out;
  }

  nlohmann::json state_json() const override {
    nlohmann::json params = nlohmann::json::array();
    for (const Param& p : params_)
      params.push_back({{"name", p.slot.name},
                        {"optimizer", p.muon ? "muon" : "adamw"},
                        {"shape", p.slot.shape}});
    return {{"format", kStateFormat},
            {"version", kStateVersion},
            {"steps_taken", steps_taken_},
            {"last_step", stats_.step},
            {"params", params}};
  }

  void load_state(const SafetensorsFile& file, const nlohmann::json& json,
                  const std::string& where) override {
    int64_t steps_taken = 0, last_step = -1;
    try {
      if (json.at("format") != kStateFormat || json.at("version") != kStateVersion)
        fail(where, "optimizer state: format ", json.at("format").dump(), " version ",
             json.at("version").dump(), ", expected \"", kStateFormat, "\" version ",
             kStateVersion);
      const auto& saved = json.at("params");
      if (saved.size() != params_.size())
        fail(where, "optimizer state holds ", saved.size(), " parameters, the model has ",
             params_.size());
      for (size_t i = 0; i < params_.size(); ++i) {
        const Param& p = params_[i];
        const std::string name = saved[i].at("name");
        const std::string opt = saved[i].at("optimizer");
        const auto shape = saved[i].at("shape").get<std::vector<int64_t>>();
        const std::string now = p.muon ? "muon" : "adamw";
        if (name != p.slot.name)
          fail(where, "optimizer state parameter ", i, " is '", name, "', the model's is '",
               p.slot.name, "'");
        if (opt != now)
          fail(where, "parameter '", name, "' was trained with ", opt,
               " but the routing now sends it to ", now,
               " (its optimizer state cannot carry over)");
        if (shape != p.slot.shape)
          fail(where, "parameter '", name, "' has another shape in the optimizer state");
      }
      steps_taken = json.at("steps_taken").get<int64_t>();
      last_step = json.at("last_step").get<int64_t>();
    } catch (const nlohmann::json::exception& e) {
      fail(where, "optimizer state JSON: ", e.what());
    }

    std::set<std::string> expected;
    for (const SafetensorsTensor& t : state_tensors()) expected.insert(t.name);
    for (const std::string& name : file.names())
      if ((name.starts_with("adamw.") || name.starts_with("muon.")) && !expected.count(name))
        fail(where, "unexpected optimizer tensor '", name, "' (the routing or model differs)");
    for (Param& p : params_) {
      auto load = [&](const std::string& name, std::vector<float>& dst) {
        if (!file.has(name)) fail(where, "missing optimizer tensor '", name, "'");
        const SafetensorsEntry& e = file.entry(name);
        if (e.dtype != DType::f32)
          fail(where, "optimizer tensor '", name, "' is ", dtype_name(e.dtype), ", expected F32");
        if (e.shape != p.slot.shape)
          fail(where, "optimizer tensor '", name, "' has shape ", shape_str(e.shape),
               ", the parameter has ", shape_str(p.slot.shape));
        std::vector<float> v = file.read<float>(name);
        std::copy(v.begin(), v.end(), dst.begin());
      };
      if (p.muon) {
        load("muon.buf." + p.slot.name, p.buf);
      } else {
        load("adamw.m." + p.slot.name, p.m);
        load("adamw.v." + p.slot.name, p.v);
      }
    }
    steps_taken_ = steps_taken;
    stats_ = StepStats{};
    stats_.step = last_step;
  }

  void set_record_updates(bool on) override { record_ = on; }

  std::span<const float> last_update(size_t i) const override {
    MG_CHECK(i < params_.size(), "parameter index ", i);
    if (!recorded_) return {};
    return {params_[i].update.data(), params_[i].update.size()};
  }

  const StepStats& last_step_stats() const override { return stats_; }

 private:
  struct Param {
    ParamSlot slot;
    bool muon = false;
    DualizerSpec dualizer;
    std::vector<float> m, v;    // AdamW moments          [shape]
    std::vector<float> buf;     // Muon momentum buffer   [rows, cols]
    std::vector<float> update;  // ΔW of the last step when recording
  };

  void adamw_update(Param& p, const Route& r, double lr, int64_t t) {
    const AdamWConfig& a = cfg_.adamw;
    AdamWConsts k;
    k.one_minus_beta1 = float(1.0 - a.beta1);
    k.beta2 = float(a.beta2);
    k.one_minus_beta2 = float(1.0 - a.beta2);
    k.decay = float(1.0 - lr * r.wd);
    k.step_size = float(lr / (1.0 - std::pow(a.beta1, double(t))));
    k.sqrt_bc2 = float(std::sqrt(1.0 - std::pow(a.beta2, double(t))));
    k.eps = float(a.eps);
    const int64_t n = p.slot.numel();
    float* w = p.slot.value;
    const float* g = p.slot.grad;
    for (int64_t j = 0; j < n; ++j) adamw_element(w[j], g[j], p.m[size_t(j)], p.v[size_t(j)], k);
  }

  void muon_update(Param& p, const Route& r, double lr, double mu) {
    const int64_t rows = p.slot.shape[0], cols = p.slot.shape[1], n = rows * cols;
    const bool ema = cfg_.muon.momentum_kind == "ema";
    const bool nesterov = cfg_.muon.nesterov;
    const float muf = float(mu), one_minus_mu = float(1.0 - mu);
    const float* g = p.slot.grad;
    float* u = u_.data();  // [rows, cols]
    float* o = o_.data();  // [rows, cols]
    for (int64_t j = 0; j < n; ++j)
      u[j] = muon_momentum_element(g[j], p.buf[size_t(j)], muf, one_minus_mu, ema, nesterov);
    dualize(p.dualizer, u, o, rows, cols, ws_);
    ++stats_.dualize_calls;
    const float decay = float(1.0 - lr * r.wd), step = float(lr * r.scale);
    float* w = p.slot.value;
    for (int64_t j = 0; j < n; ++j) w[j] = muon_apply_element(w[j], o[j], decay, step);
  }

  OptimConfig cfg_;
  std::vector<Param> params_;
  std::vector<float> u_, o_;  // Muon scratch, the size of the largest matrix
  DualizerWorkspace ws_;
  bool record_ = false, recorded_ = false;
  StepStats stats_;
  int64_t steps_taken_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<Route>& routes,
                                              const std::vector<ParamSlot>& slots,
                                              const OptimConfig& cfg, Comm* comm) {
  if (comm) fail("optim", "multi-rank CPU optimizer: not built yet");
  return std::make_unique<CpuOptimizer>(routes, slots, cfg);
}

}  // namespace muongpt
