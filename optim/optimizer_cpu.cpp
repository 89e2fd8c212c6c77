// The CPU optimizer: AdamW and Muon over fp32 parameters, fp32 state. Every buffer (moments,
// momentum, Muon scratch, dualizer workspace after its first use) is allocated up front or on the
// first step, never again. The Muon matrices are updated concurrently, one per worker with
// single-threaded BLAS (parallel_tasks), each with its own scratch.
#include "optim/optimizer_cpu.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>

#include "core/comm.h"
#include "core/cpu_math.h"
#include "core/error.h"
#include "core/parallel.h"
#include "optim/dualizer.h"
#include "optim/optimizer_state.h"
#include "optim/schedule.h"
#include "optim/shard_plan.h"
#include "optim/update_math.h"

namespace muongpt {

namespace {

class CpuOptimizer final : public Optimizer {
 public:
  CpuOptimizer(const std::vector<Route>& routes, const std::vector<ParamSlot>& slots,
               const OptimConfig& cfg, Comm* comm)
      : Optimizer(routes),
        cfg_(cfg),
        comm_(comm),
        rank_(comm ? comm->rank() : 0),
        world_(comm ? comm->world() : 1),
        plan_(make_shard_plan(routes, world_)) {
    DualizerSpec ns_default;
    ns_default.coeffs = parse_ns_coeffs(cfg.muon.ns_coeffs, "optim", "[optim.muon] ns_coeffs");
    ns_default.ns_steps = static_cast<int>(cfg.muon.ns_steps);
    ns_default.ns_eps = cfg.muon.ns_eps;
    int64_t largest_matrix = 0;
    for (size_t i = 0; i < routes.size(); ++i) {
      Param p;
      p.slot = slots[i];
      p.muon = routes[i].optimizer == "muon";
      const ShardSegment mine = plan_.segment(i, rank_);
      p.lo = mine.begin;
      p.hi = mine.end;
      const size_t n = size_t(p.hi - p.lo);
      if (p.muon) {
        p.dualizer = parse_dualizer(routes[i].dualizer, ns_default, "optim",
                                    "parameter '" + routes[i].name + "'");
        p.buf.assign(n, 0.0f);
        if (n) {
          largest_matrix = std::max(largest_matrix, p.slot.numel());
          muon_.push_back(i);
        }
      } else {
        p.m.assign(n, 0.0f);
        p.v.assign(n, 0.0f);
      }
      params_.push_back(std::move(p));
    }
    // Largest first, so that the last tasks to start are short ones.
    std::stable_sort(muon_.begin(), muon_.end(), [&](size_t a, size_t b) {
      return params_[a].slot.numel() > params_[b].slot.numel();
    });
    scratch_.resize(size_t(std::min<int64_t>(cpu_threads(), std::max<size_t>(muon_.size(), 1))));
    for (MuonScratch& s : scratch_) s.u.assign(size_t(largest_matrix), 0.0f);
    if (world_ > 1) {
      send_.assign(size_t(plan_.count * world_), 0.0f);
      gather_.assign(send_.size(), 0.0f);
      recv_.assign(size_t(plan_.count), 0.0f);
      std::vector<ShardTensors> t;
      for (const Param& p : params_) t.push_back({p.slot.value, p.slot.grad});
      grads_out_ = gradients_to_blocks(plan_, t, send_.data());
      grads_in_ = gradients_from_blocks(plan_, t, recv_.data(), rank_);
      grads_in_all_ = gradients_from_blocks(plan_, t, send_.data(), -1);
      values_out_ = values_to_block(plan_, t, rank_, send_.data());
      values_in_ = values_from_blocks(plan_, t, gather_.data(), rank_);
    }
  }

  double reduce_gradients(bool everywhere) override {
    if (world_ > 1) {
      // Sum every rank's gradients into the owners' segments (or everyone's), then average.
      lap(clock_, Op::collectives);
      run_copies(grads_out_, 1.0f);
      const float inv = 1.0f / float(world_);
      if (everywhere) {
        comm_->all_reduce_sum(send_.data(), int64_t(send_.size()), DType::f32);
        run_copies(grads_in_all_, inv);
      } else {
        comm_->reduce_scatter_sum(send_.data(), recv_.data(), plan_.count, DType::f32);
        run_copies(grads_in_, inv);
      }
    }
    lap(clock_, Op::grad_norm);
    double ss = 0;  // over this rank's own segments, then over the ranks
    for (const Param& p : params_) ss += sum_squares_f64(p.slot.grad + p.lo, nullptr, p.hi - p.lo);
    return std::sqrt(comm_ ? comm_->sum(ss) : ss);
  }

  void step(int64_t step, double lr_scale) override {
    stats_ = begin_step_stats(cfg_.muon, step, lr_scale);
    const double mu = stats_.muon_momentum;
    recorded_ = record_;
    lap(clock_, Op::adamw);
    for (size_t i = 0; i < params_.size(); ++i) {
      Param& p = params_[i];
      const Route& r = routes_[i];
      if (p.hi == p.lo || p.muon) continue;  // another rank's, or below
      adamw_update(p, r, r.lr * lr_scale, step + 1);
      ++stats_.adamw_params;
    }
    lap(clock_, Op::muon_momentum);
    for (MuonScratch& s : scratch_) s.ms = {};
    parallel_tasks(int64_t(muon_.size()), [&](int64_t t, int worker) {
      const size_t i = muon_[size_t(t)];
      muon_update(params_[i], routes_[i], routes_[i].lr * lr_scale, mu, scratch_[size_t(worker)]);
    });
    if (clock_) {  // the matrices' parts interleave over the threads: share by their thread time
      std::array<double, 3> ms{};
      for (const MuonScratch& s : scratch_)
        for (size_t k = 0; k < 3; ++k) ms[k] += s.ms[k];
      clock_->share(
          {{Op::muon_momentum, ms[0]}, {Op::newton_schulz, ms[1]}, {Op::muon_apply, ms[2]}});
    }
    stats_.muon_params += int64_t(muon_.size());
    stats_.dualize_calls += int64_t(muon_.size());
    if (world_ > 1) {  // every rank's updated segments to every rank (and their ΔW)
      lap(clock_, Op::collectives);
      run_copies(values_out_, 1.0f);
      comm_->all_gather(send_.data(), gather_.data(), plan_.count, DType::f32);
      run_copies(values_in_, 1.0f, recorded_);
    }
    ++steps_taken_;
  }

  size_t memory_bytes() const override {
    size_t floats = send_.capacity() + recv_.capacity() + gather_.capacity();
    for (const Param& p : params_)
      floats += p.m.capacity() + p.v.capacity() + p.buf.capacity() + p.update.capacity();
    size_t bytes = floats * sizeof(float);
    for (const MuonScratch& s : scratch_) {
      const DualizerWorkspace& ws = s.ws;
      bytes += s.u.capacity() * 4;
      for (const auto* f : {&ws.f0, &ws.f1, &ws.f2, &ws.f3}) bytes += f->capacity() * 4;
      for (const auto* d : {&ws.d0, &ws.d1, &ws.d2, &ws.d3, &ws.d4, &ws.d5, &ws.d6})
        bytes += d->capacity() * 8;
    }
    return bytes;
  }

  std::vector<SafetensorsTensor> state_tensors() const override {
    if (world_ > 1) gather_whole_state();
    std::vector<SafetensorsTensor> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      const State& st = world_ > 1 ? full_state_[i] : p.state();
      if (p.muon) {
        out.push_back({"muon.buf." + p.slot.name, DType::f32, p.slot.shape, st.buf});
      } else {
        out.push_back({"adamw.m." + p.slot.name, DType::f32, p.slot.shape, st.m});
        out.push_back({"adamw.v." + p.slot.name, DType::f32, p.slot.shape, st.v});
      }
    }
    return out;
  }

  nlohmann::json state_json() const override {
    return optimizer_state_json(state_params(), steps_taken_, stats_.step);
  }

  void load_state(const SafetensorsFile& file, const nlohmann::json& json,
                  const std::string& where) override {
    const StateCounters counters = check_optimizer_state(file, json, state_params(), where);
    for (Param& p : params_) {
      auto load = [&](const std::string& name, std::vector<float>& dst) {
        // The whole tensor: keep our part.
        const std::vector<float> v = read_state_tensor(file, name, p.slot.shape, where);
        std::copy(v.begin() + p.lo, v.begin() + p.hi, dst.begin());
      };
      const auto names = state_tensor_names({p.slot.name, p.slot.shape, p.muon});
      if (p.muon) {
        load(names[0], p.buf);
      } else {
        load(names[0], p.m);
        load(names[1], p.v);
      }
    }
    steps_taken_ = counters.steps_taken;
    stats_ = StepStats{};
    stats_.step = counters.last_step;
  }

  // The ΔW buffers are allocated the first time recording is switched on; the update loops write
  // ΔW = new − old of their own elements, the exchange (its list rebuilt here with the ΔW
  // pointers) that of the other ranks' segments.
  void set_record_updates(bool on) override {
    record_ = on;
    if (!on || update_buffers_) return;
    update_buffers_ = true;
    for (Param& p : params_) p.update.assign(size_t(p.slot.numel()), 0.0f);
    if (world_ > 1) {
      std::vector<ShardTensors> t;
      for (Param& p : params_) t.push_back({p.slot.value, p.slot.grad, nullptr, p.update.data()});
      values_in_ = values_from_blocks(plan_, t, gather_.data(), rank_);
    }
  }

  std::span<const float> last_update(size_t i) const override {
    MG_CHECK(i < params_.size(), "parameter index ", i);
    if (!recorded_) return {};
    return {params_[i].update.data(), params_[i].update.size()};
  }

  const StepStats& last_step_stats() const override { return stats_; }

 private:
  // Views of one parameter's whole state (null where the optimizer keeps none).
  struct State {
    const float *m = nullptr, *v = nullptr, *buf = nullptr;
  };
  struct Param {
    ParamSlot slot;
    bool muon = false;
    DualizerSpec dualizer;
    int64_t lo = 0, hi = 0;     // the elements this rank updates (all, a piece, or none)
    std::vector<float> m, v;    // AdamW moments of elements [lo, hi)
    std::vector<float> buf;     // Muon momentum buffer [rows, cols] (owner only)
    std::vector<float> update;  // ΔW of the last recorded step (all elements)
    State state() const { return {m.data(), v.data(), buf.data()}; }
  };

  // Collective: every rank's state segments to every rank, assembled into whole tensors.
  void gather_whole_state() const {
    std::vector<StatePiece> mine;
    for (const Param& p : params_) mine.push_back({p.muon, p.slot.numel(), p.m, p.v, p.buf});
    full_ = gather_state(plan_, rank_, *comm_, mine);
    full_state_.assign(params_.size(), State{});
    for (size_t i = 0; i < params_.size(); ++i) {
      const std::vector<float>& whole = full_[i];
      if (whole.empty()) continue;
      full_state_[i] = params_[i].muon
                           ? State{nullptr, nullptr, whole.data()}
                           : State{whole.data(), whole.data() + params_[i].slot.numel(), nullptr};
    }
  }

  std::vector<StateParam> state_params() const {
    std::vector<StateParam> out;
    for (const Param& p : params_) out.push_back({p.slot.name, p.slot.shape, p.muon});
    return out;
  }

  void adamw_update(Param& p, const Route& r, double lr, int64_t t) {
    const AdamWConsts k = adamw_consts(cfg_.adamw, lr, r.wd, t);
    float* w = p.slot.value + p.lo;
    const float* g = p.slot.grad + p.lo;
    float* m = p.m.data();
    float* v = p.v.data();
    if (!recorded_) {
      for (int64_t j = 0; j < p.hi - p.lo; ++j) adamw_element(w[j], g[j], m[j], v[j], k);
      return;
    }
    float* delta = p.update.data() + p.lo;
    for (int64_t j = 0; j < p.hi - p.lo; ++j) {
      const float before = w[j];
      adamw_element(w[j], g[j], m[j], v[j], k);
      delta[j] = w[j] - before;
    }
  }

  // One worker's Muon scratch: the dualizer's input, dualized in place, and its workspace.
  struct MuonScratch {
    std::vector<float> u;  // [rows, cols] of the largest matrix
    DualizerWorkspace ws;
    std::array<double, 3> ms{};  // profiling: this thread's momentum, dualizer and update time
  };

  // Reads and writes only p (its gradient, buffer and weights) and s: tasks run concurrently.
  void muon_update(Param& p, const Route& r, double lr, double mu, MuonScratch& s) const {
    using Clock = std::chrono::steady_clock;
    auto t = clock_ ? Clock::now() : Clock::time_point{};
    auto part = [&](size_t k) {  // profiling only: the part since the last mark
      if (!clock_) return;
      const auto now = Clock::now();
      s.ms[k] += std::chrono::duration<double, std::milli>(now - t).count();
      t = now;
    };
    const int64_t rows = p.slot.shape[0], cols = p.slot.shape[1], n = rows * cols;
    const bool ema = cfg_.muon.momentum_kind == "ema";
    const bool nesterov = cfg_.muon.nesterov;
    const float muf = float(mu), one_minus_mu = float(1.0 - mu);
    const float* g = p.slot.grad;
    float* u = s.u.data();  // [rows, cols]
    for (int64_t j = 0; j < n; ++j)
      u[j] = muon_momentum_element(g[j], p.buf[size_t(j)], muf, one_minus_mu, ema, nesterov);
    part(0);
    dualize(p.dualizer, u, u, rows, cols, s.ws);
    part(1);
    const MuonConsts k = muon_consts(lr, r.wd, r.scale);
    float* w = p.slot.value;
    if (!recorded_) {
      for (int64_t j = 0; j < n; ++j) w[j] = muon_apply_element(w[j], u[j], k.decay, k.step);
    } else {
      float* delta = p.update.data();
      for (int64_t j = 0; j < n; ++j) {
        const float after = muon_apply_element(w[j], u[j], k.decay, k.step);
        delta[j] = after - w[j];
        w[j] = after;
      }
    }
    part(2);
  }

  OptimConfig cfg_;
  Comm* comm_;  // null: one process
  int rank_, world_;
  ShardPlan plan_;
  std::vector<Param> params_;
  std::vector<float> send_, recv_, gather_;  // [world · count], [count], [world · count]
  // The exchanges (shard_plan.h): gradients to the blocks and back (own or all), values out, in.
  std::vector<SegmentCopy> grads_out_, grads_in_, grads_in_all_, values_out_, values_in_;
  mutable std::vector<std::vector<float>> full_;  // whole state per parameter (gathered)
  mutable std::vector<State> full_state_;
  std::vector<size_t> muon_;          // this rank's Muon parameters, largest first
  std::vector<MuonScratch> scratch_;  // one per worker of parallel_tasks
  bool record_ = false, recorded_ = false, update_buffers_ = false;
  StepStats stats_;
  int64_t steps_taken_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> make_cpu_optimizer(const std::vector<Route>& routes,
                                              const std::vector<ParamSlot>& slots,
                                              const OptimConfig& cfg, Comm* comm) {
  if (comm && comm->buffers() != Device::cpu)
    fail("optim", "the CPU optimizer needs a host-memory communicator, got ", comm->backend());
  return std::make_unique<CpuOptimizer>(routes, slots, cfg, comm);
}

}  // namespace muongpt
