// The optimizer the trainer drives: one object updates every parameter from its gradient, each by
// the optimizer its Route names (AdamW or Muon with some dualizer). Callers see only this
// interface; the CPU implementation is what create() returns today, and the CUDA and multi-rank
// implementations slot in behind the same factory (chosen by ParamSlot::device and, later, a
// communicator argument) without changes to the trainer.
//
// Usage (trainer):
//   auto routes = resolve_routing(model.specs(), cfg.optim, file, &warnings);
//   auto opt = Optimizer::create(routes, model.param_slots(), cfg.optim);
//   for step s: zero grads, forward/backward, opt->step(s, lr_multiplier(sched, s, total));
//
// Checkpoints: state_tensors() (fp32 moments and momentum buffers, named "adamw.m.<param>",
// "adamw.v.<param>", "muon.buf.<param>") go into a safetensors file, state_json() beside it;
// load_state() restores both and refuses a checkpoint whose names, routes or shapes differ.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "model/params.h"
#include "model/profile.h"
#include "optim/config.h"
#include "optim/routing.h"

namespace muongpt {

class Comm;  // core/comm.h

// What the last step() did, for logs, tests and the distributed implementation.
struct StepStats {
  int64_t step = -1;                          // the step argument
  double lr_scale = 0;                        // the schedule multiplier
  double muon_momentum = 0;                   // μ used by Muon
  int64_t dualize_calls = 0;                  // one per Muon matrix on one process
  int64_t adamw_params = 0, muon_params = 0;  // tensors updated
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // routes[i] must describe slots[i] (same name and shape, the order of resolve_routing()).
  // Allocates all optimizer state (zeros) up front. `comm` (null = one process) is the group of
  // ranks that train this model together; it must outlive the optimizer.
  static std::unique_ptr<Optimizer> create(const std::vector<Route>& routes,
                                           const std::vector<ParamSlot>& slots,
                                           const OptimConfig& cfg, Comm* comm = nullptr);

  // Collective. Averages the step's gradients over the ranks and returns the global L2 norm of
  // the averaged gradient. Each rank receives the averaged gradient of the parameters (or parts)
  // it updates; `everywhere` makes every rank receive all of it (telemetry steps). On one rank it
  // only computes the norm. The caller may then scale the gradients (clipping) before step().
  virtual double reduce_gradients(bool everywhere) = 0;

  // Collective. One update of every parameter from its (reduced) gradient; on several ranks each
  // updates its own parameters (or parts) and the results are gathered, so every rank ends with
  // every updated parameter. `step` is the 0-based optimizer step (Muon's
  // momentum warmup, AdamW's bias correction t = step + 1); lr_scale multiplies every base lr
  // (and so the decoupled decay lr·wd) for this step.
  virtual void step(int64_t step, double lr_scale) = 0;

  // Checkpoint state. The tensors view the optimizer's own buffers (valid while it lives, in host
  // memory). Collective on several ranks: every rank must call it, and each receives the whole
  // state (gathered from the ranks that hold its parts).
  virtual std::vector<SafetensorsTensor> state_tensors() const = 0;
  virtual nlohmann::json state_json() const = 0;
  // Tensors whose names do not start with "adamw." or "muon." are ignored (the file may hold
  // other state); every expected tensor must be present, F32, with the parameter's shape, and
  // no unexpected "adamw."/"muon." tensor may be. Errors name `where`.
  virtual void load_state(const SafetensorsFile& file, const nlohmann::json& json,
                          const std::string& where) = 0;

  // Telemetry: while on, step() keeps the update it applied to each parameter, ΔW = W_after −
  // W_before (decay included), readable with last_update(i) until the next step. The buffers are
  // allocated on first use; the trainer needs no weight copy. Off by default.
  virtual void set_record_updates(bool on) = 0;
  // Empty when the last step did not record. In the parameters' memory: device memory for the
  // CUDA optimizer, so that telemetry computes its spectra where it lives.
  virtual std::span<const float> last_update(size_t i) const = 0;

  // The per-op profile's clock (model/profile.h; null: none): reduce_gradients() and step() mark
  // their parts on it.
  void set_op_clock(OpClock* clock) { clock_ = clock; }

  virtual const StepStats& last_step_stats() const = 0;
  // Bytes this optimizer holds in the parameters' memory: state, scratch, workspaces and the ΔW
  // buffers once recording has been on (for the memory line the trainer prints before step 0).
  virtual size_t memory_bytes() const = 0;
  int64_t dualize_calls() const { return last_step_stats().dualize_calls; }

  const std::vector<Route>& routes() const { return routes_; }

 protected:
  explicit Optimizer(std::vector<Route> routes) : routes_(std::move(routes)) {}
  std::vector<Route> routes_;
  OpClock* clock_ = nullptr;
};

// What create() will hold on the parameters' device, known before it exists (memory planning):
// AdamW's moments and Muon's momentum for this rank's share of `world` ranks, and with
// `record_updates` (telemetry) the ΔW buffers. Workspaces (a few matrices) are not counted.
size_t optimizer_state_bytes(const std::vector<Route>& routes, bool record_updates, int world);

// Multi-rank Muon plan: the owner rank of each Muon route (−1 for AdamW routes). Muon matrices are
// grouped by (shape, dualizer) in order of first appearance; within a group matrix j goes to rank
// (offset + j) mod world_size, where offset is the number of Muon matrices in earlier groups, so
// every group is spread over the ranks and the per-rank counts differ by at most one.
std::vector<int> muon_owner_ranks(const std::vector<Route>& routes, int world_size);

}  // namespace muongpt
