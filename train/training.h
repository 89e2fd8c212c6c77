// One training run's state and its step. `Training` holds what a step needs (model, routing,
// optimizer, batches, validation set, telemetry, counters), built from the config exactly once;
// step() is the one training step: the trainer's loop (train/trainer.cpp), `muongpt bench` and
// the profiler all run it, so what is benchmarked is what trains. Hooks see each phase of it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/comm.h"
#include "core/rng.h"
#include "data/loader.h"
#include "model/model.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/criterion.h"
#include "train/telemetry.h"

namespace muongpt {

// The phases of a step, in the order they first run:
//   data       the next micro-batch from the loader (or random ids)
//   forward    the model's forward (its loss read back)
//   backward   the model's backward
//   reduce     the loss and gradients averaged over the ranks, the gradient norm, the
//              non-finite check and clipping
//   optimizer  the update (and the check that it left every weight finite)
//   telemetry  on telemetry steps: activation Grams, gradient and update spectra
enum class Phase : uint8_t { data, forward, backward, reduce, optimizer, telemetry };
inline constexpr int kPhases = 6;
std::string_view phase_name(Phase p);

// Called around each phase of a step; the training loop passes none.
class StepHooks {
 public:
  virtual ~StepHooks() = default;
  virtual void begin(Phase) {}
  virtual void end(Phase) {}
};

// Milliseconds per phase of the steps it saw since reset(), summed over the calls (micro-batches),
// and each call in order. It waits for the model's queued GPU work at each boundary, so that the
// time lands in the phase that queued it.
class PhaseTimer final : public StepHooks {
 public:
  explicit PhaseTimer(Model& model) : model_(model) {}
  void begin(Phase p) override;
  void end(Phase p) override;
  void reset();
  double ms(Phase p) const { return ms_[size_t(p)]; }
  const std::vector<std::pair<Phase, double>>& calls() const { return calls_; }

 private:
  Model& model_;
  std::array<double, kPhases> ms_{};
  std::vector<std::pair<Phase, double>> calls_;
  double t0_ = 0;
};

class Training;

// The per-op profile of a step (`muongpt bench --profile`): the time of every kind of op of the
// model (forward and backward apart) and of the optimizer, from the clock the model and the
// optimizer mark (model/profile.h), and of the step's other phases (data, telemetry). It waits
// for the device at the phase boundaries, like PhaseTimer; inside a phase the GPU's times come
// from CUDA events, so nothing else waits.
class StepProfiler final : public StepHooks {
 public:
  explicit StepProfiler(Training& run);  // attaches a clock to the run's model and optimizer
  ~StepProfiler() override;              // detaches it
  StepProfiler(const StepProfiler&) = delete;
  StepProfiler& operator=(const StepProfiler&) = delete;
  void begin(Phase p) override;
  void end(Phase p) override;

  struct Row {
    std::string op, pass;  // pass "" for the data, telemetry and what no op took ("rest")
    double ms = 0;
  };
  // The steps seen so far as rows that add up to `step_ms` (their wall-clock time): what a phase
  // took beyond its ops' events (launches, host work) is its pass's "other"; what no phase took,
  // "rest".
  std::vector<Row> rows(double step_ms);

 private:
  Training& run_;
  std::unique_ptr<OpClock> clock_;
  std::array<double, kPhases> wall_ms_{};
  double t0_ = 0;
};

// What one step produced.
struct StepResult {
  double loss = 0, grad_norm = 0, lr_scale = 0, seconds = 0;
  double comm_s = 0;         // inside collectives (host-memory communicators; see metrics())
  nlohmann::json telemetry;  // the ranks.jsonl record on telemetry steps, else null
  std::optional<CriterionDecision> routing_decision;  // the criterion routing decided here
  double telemetry_s() const {
    return telemetry.is_null() ? 0.0 : telemetry["seconds"].get<double>();
  }
};

struct TrainingOptions {
  int local_rank = 0;        // picks the GPU
  std::string resume;        // a checkpoint directory to start from ("" = step 0)
  bool random_data = false;  // uniform random token ids instead of the shards (no validation)
};

class Training {
 public:
  // Builds everything from the config (and the checkpoint). Collective: every rank of `comm`.
  Training(const RunConfig& cfg, Comm& comm, const TrainingOptions& options);

  // One optimizer step: forward/backward over the micro-batches, the gradient average over the
  // ranks, checks, clipping, the update, and telemetry when due (or `telemetry`). Collective.
  // Errors (a non-finite loss, gradient or weight) name the step and leave the last checkpoint
  // as it is.
  StepResult step(StepHooks* hooks = nullptr, bool telemetry = false);
  // Mean loss over the validation tokens (NaN without a val set). Collective.
  double evaluate();
  // Collective (the optimizer state is gathered); rank 0 writes. Returns the directory ("" on
  // the other ranks).
  std::string save_checkpoint();

  // Each component decides when it is due, given whether this step is the run's last.
  bool evaluation_due(bool last) const;
  bool checkpoint_due(bool last) const;
  bool log_due(bool last) const;

  int64_t steps_done() const { return step_; }
  // Wall-clock seconds the run has trained, over all its resumes (saved in checkpoints).
  double elapsed_s() const;
  int64_t tokens_per_step() const;
  // Model FLOP utilisation of a step that took `seconds` (docs/bench.md, "The FLOP count"); NaN
  // when the peak is unknown.
  double mfu(double seconds) const;
  double flops_per_token() const { return flops_per_token_; }
  double peak_tflops() const { return peak_tflops_; }
  bool random_data() const { return !loader_.has_value(); }
  nlohmann::json metrics(const StepResult& r, double val_loss) const;
  std::string describe() const;  // the model line the trainer prints before step 0

  // The per-op profile's clock for the model and the optimizer (null: none); it stays attached
  // when the criterion routing replaces the optimizer.
  void set_op_clock(OpClock* clock);

  Model& model() { return *model_; }
  const Model& model() const { return *model_; }
  const std::vector<Route>& routes() const { return routes_; }
  // The criterion routing's decision, once taken (routing = "criterion").
  const std::optional<CriterionDecision>& routing_decision() const { return decision_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  void next_batch();  // windows_ → idx_, tgt_
  std::vector<Route> initial_routes();
  void decide_routing(StepResult& r);

  // In the order they are built: what is cheap to check (data, checkpoint) before the model.
  const RunConfig& cfg_;
  Comm& comm_;
  int64_t B_, T_, accum_;
  std::optional<DataLoader> loader_;  // none: random ids from rng_
  Rng rng_;
  std::optional<ValLoader> val_;
  std::optional<Checkpoint> resume_;
  std::vector<std::string> warnings_;
  std::optional<CriterionProbe> probe_;  // routing = "criterion", inside the probe window
  std::optional<CriterionDecision> decision_;
  std::vector<Route> routes_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  OpClock* clock_ = nullptr;
  RankTelemetry telemetry_;
  double flops_per_token_, peak_tflops_;
  std::vector<int32_t> windows_, idx_, tgt_;  // [B, T+1], [B, T], [B, T]
  int64_t step_ = 0, tokens_ = 0;
  double elapsed_before_ = 0;  // seconds of the run before this process resumed it
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// The ModelOptions of a [device] section for the rank with `local_rank` ("auto" resolved; errors
// name the config file: no GPU visible, or a build without CUDA).
ModelOptions model_options(const RunConfig& cfg, int local_rank);
// "cpu" or "cuda" for a [device] backend value ("auto": cuda when a GPU is visible).
std::string resolve_backend(const std::string& backend);

}  // namespace muongpt
