#include "train/training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/device.h"
#include "core/error.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/fault.h"
#include "train/job.h"

namespace muongpt {

namespace {

using Clock = std::chrono::steady_clock;

double now_ms() {
  return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count();
}

constexpr const char* kStopped = "; stopping (the last checkpoint is intact)";

// Brackets a phase for the hooks (none: nothing happens).
class InPhase {
 public:
  InPhase(StepHooks* hooks, Phase p) : hooks_(hooks), p_(p) {
    if (hooks_) hooks_->begin(p_);
  }
  ~InPhase() {
    if (hooks_) hooks_->end(p_);
  }
  InPhase(const InPhase&) = delete;
  InPhase& operator=(const InPhase&) = delete;

 private:
  StepHooks* hooks_;
  Phase p_;
};

}  // namespace

std::string_view phase_name(Phase p) {
  static constexpr std::string_view kNames[kPhases] = {"data",   "forward",   "backward",
                                                       "reduce", "optimizer", "telemetry"};
  return kNames[size_t(p)];
}

void PhaseTimer::begin(Phase) {
  model_.synchronize();
  t0_ = now_ms();
}

void PhaseTimer::end(Phase p) {
  model_.synchronize();
  const double ms = now_ms() - t0_;
  ms_[size_t(p)] += ms;
  calls_.emplace_back(p, ms);
}

void PhaseTimer::reset() {
  ms_.fill(0);
  calls_.clear();
}

namespace {
// The clock's pass for a phase, if its time goes to ops.
std::optional<Pass> pass_of(Phase p) {
  switch (p) {
    case Phase::forward:
      return Pass::forward;
    case Phase::backward:
      return Pass::backward;
    case Phase::reduce:
      return Pass::reduce;
    case Phase::optimizer:
      return Pass::optimizer;
    default:
      return std::nullopt;
  }
}
}  // namespace

StepProfiler::StepProfiler(Training& run)
    : run_(run), clock_(make_op_clock(run.model().device(), run.model().stream())) {
  run_.set_op_clock(clock_.get());
}

StepProfiler::~StepProfiler() {
  run_.set_op_clock(nullptr);
}

void StepProfiler::begin(Phase p) {
  run_.model().synchronize();
  t0_ = now_ms();
  if (const auto pass = pass_of(p)) clock_->begin(*pass);
}

void StepProfiler::end(Phase p) {
  if (pass_of(p)) clock_->end();
  run_.model().synchronize();
  wall_ms_[size_t(p)] += now_ms() - t0_;
}

std::vector<StepProfiler::Row> StepProfiler::rows(double step_ms) {
  const OpClock::Times ops = clock_->collect();
  std::vector<Row> out;
  double accounted = 0;
  auto add = [&](Row r) {
    accounted += r.ms;
    if (r.ms > 0) out.push_back(std::move(r));
  };
  for (int ph = 0; ph < kPhases; ++ph) {
    const Phase phase = Phase(ph);
    const auto pass = pass_of(phase);
    if (!pass) {
      add({std::string(phase_name(phase)), "", wall_ms_[size_t(ph)]});
      continue;
    }
    double in_ops = 0;
    for (int op = 0; op < kOps; ++op) {
      const double ms = ops[size_t(*pass)][size_t(op)];
      in_ops += ms;
      if (Op(op) != Op::other)
        add({std::string(op_name(Op(op))), std::string(pass_name(*pass)), ms});
    }
    // Beyond the ops: between the marks, and (GPU) launches and host work between the events.
    add({"other", std::string(pass_name(*pass)),
         std::max(0.0, wall_ms_[size_t(ph)] - in_ops) + ops[size_t(*pass)][size_t(Op::other)]});
  }
  out.push_back({"rest", "", std::max(0.0, step_ms - accounted)});
  return out;
}

std::string resolve_backend(const std::string& backend) {
  if (backend != "auto") return backend;
  return built_with_cuda() && cuda_device_count() > 0 ? "cuda" : "cpu";
}

ModelOptions model_options(const RunConfig& cfg, int local_rank) {
  ModelOptions o;
  if (resolve_backend(cfg.device.backend) == "cpu") return o;
  o.backend = Backend::cuda;
  o.precision = precision_from_name(cfg.device.precision, cfg.file + ": [device] precision");
  o.attention = attention_from_name(cfg.device.attention, cfg.file + ": [device] attention");
  if (!built_with_cuda())
    fail(cfg.file, "[device] backend = \"cuda\": this muongpt was built without CUDA support");
  if (cuda_device_count() == 0)
    fail(cfg.file, "[device] backend = \"cuda\" but no GPU is visible (", describe_devices(), ")");
  o.gpu = local_rank % cuda_device_count();
  return o;
}

namespace {
// The parameter table, once the shapes are known to be possible (before anything is sized by
// them).
std::vector<ParamSpec> checked_specs(const RunConfig& cfg) {
  check_batch_shape(cfg.model, cfg.data.batch_size, cfg.seq());
  return param_specs(cfg.model);
}

// The model, once the plan of everything the run keeps on its device (the model's arena, the
// optimizer state, the telemetry's Grams) has been checked against the memory there.
std::unique_ptr<Model> make_planned_model(const RunConfig& cfg, int local_rank,
                                          const std::vector<Route>& routes, int world) {
  const ModelOptions options = model_options(cfg, local_rank);
  const int64_t B = cfg.data.batch_size, T = cfg.seq();
  const bool telemetry = cfg.telemetry.every > 0 || cfg.optim.routing == "criterion";
  check_model_fits(plan_model(cfg.model, B, T, options),
                   optimizer_state_bytes(routes, telemetry, world) +
                       RankTelemetry::planned_bytes(cfg.model, telemetry ? 1 : 0),
                   cfg.file);
  return make_model(cfg.model, B, T, options);
}
}  // namespace

namespace {

// The train loader, or none for random ids; "[data] train" is required otherwise.
std::optional<DataLoader> make_loader(const RunConfig& cfg, const Comm& comm, bool random_data) {
  if (random_data) return std::nullopt;
  if (cfg.data.train.empty())
    fail(cfg.file,
         "[data] train: no training shards given (a glob of token shards is required; "
         "tools/make_demo_corpus.sh and tools/fetch_fineweb.sh make some)");
  return std::make_optional<DataLoader>(
      LoaderOptions{.pattern = cfg.data.train,
                    .batch = cfg.data.batch_size,
                    .seq = cfg.seq(),
                    .rank = comm.rank(),
                    .world = comm.world(),
                    .mode = parse_sample_mode(cfg.data.mode, cfg.file + ": [data] mode"),
                    .seed = static_cast<uint64_t>(cfg.run.seed)});
}

std::optional<ValLoader> make_val_loader(const RunConfig& cfg, const Comm& comm, bool random_data) {
  if (cfg.data.val.empty() || random_data) return std::nullopt;
  return std::make_optional<ValLoader>(cfg.data.val, cfg.data.val_tokens, cfg.data.batch_size,
                                       cfg.seq(), comm.rank(), comm.world());
}

// The checkpoint to resume from, read and checked against the config.
std::optional<Checkpoint> open_resume(const RunConfig& cfg, const std::string& dir) {
  if (dir.empty()) return std::nullopt;
  std::optional<Checkpoint> ck(std::in_place, dir);
  check_same_model(ck->model_config(), cfg.model, dir);
  if (ck->step() >= cfg.train.steps)
    fail(dir, "is at step ", ck->step(), " and [train] steps = ", cfg.train.steps,
         ": nothing is left to train (raise [train] steps to continue the run)");
  return ck;
}

}  // namespace

Training::Training(const RunConfig& cfg, Comm& comm, const TrainingOptions& options)
    : cfg_(cfg),
      comm_(comm),
      B_(cfg.data.batch_size),
      T_(cfg.seq()),
      accum_(cfg.data.grad_accum),
      loader_(make_loader(cfg, comm, options.random_data)),
      rng_(uint64_t(cfg.run.seed) + uint64_t(comm.rank())),
      val_(make_val_loader(cfg, comm, options.random_data)),
      resume_(open_resume(cfg, options.resume)),
      routes_(initial_routes()),
      model_(make_planned_model(cfg, options.local_rank, routes_, comm.world())),
      optimizer_(Optimizer::create(routes_, model_->param_slots(), cfg.optim,
                                   comm.world() > 1 ? &comm : nullptr)),
      telemetry_(*model_, cfg.telemetry.every, &comm, telemetry_owners(routes_, comm.world()),
                 /*on_demand=*/cfg.optim.routing == "criterion"),
      flops_per_token_(train_flops_per_token(cfg.model, model_->specs(), T_)),
      peak_tflops_(cfg.device.peak_tflops > 0 ? cfg.device.peak_tflops : model_->peak_tflops()),
      windows_(B_ * (T_ + 1)),
      idx_(B_ * T_),
      tgt_(B_ * T_) {
  model_->init_params(static_cast<uint64_t>(cfg.run.seed));
  if (telemetry_.enabled()) {  // the ΔW buffers now, not inside step 1
    optimizer_->set_record_updates(true);
    optimizer_->set_record_updates(false);
  }
  if (!resume_) return;
  const Checkpoint& ck = *resume_;
  model_->set_params(ck.weights(cfg.model).data());
  optimizer_->load_state(ck.optimizer(), ck.optimizer_json(), ck.dir());
  if (loader_) loader_->restore(LoaderPosition::from_json(ck.loader_json(), ck.dir()));
  step_ = ck.step();
  tokens_ = ck.tokens();
  elapsed_before_ = ck.elapsed_s();
  resume_.reset();  // its files are no longer needed
}

// The base routing, or (routing = "criterion", resuming after its decision) the decided one;
// inside the probe window the probe, with the sums a checkpoint carries.
std::vector<Route> Training::initial_routes() {
  const std::vector<ParamSpec> specs = checked_specs(cfg_);
  std::vector<Route> routes = resolve_routing(specs, cfg_.optim, cfg_.file, &warnings_);
  if (cfg_.optim.routing != "criterion") return routes;
  const nlohmann::json saved =
      resume_ ? resume_->state().value("criterion", nlohmann::json()) : nlohmann::json();
  const std::string where = resume_ ? resume_->dir() : cfg_.file;
  if (saved.contains("decision")) {
    decision_ = CriterionDecision::from_json(saved["decision"], where);
    return resolve_routing(specs, decided_config(cfg_.optim, *decision_), cfg_.file, &warnings_);
  }
  if (resume_ && resume_->step() >= cfg_.optim.criterion.probe_steps)
    fail(where, "is at step ", resume_->step(), ", past the criterion routing's probe window (",
         cfg_.optim.criterion.probe_steps, " steps), but holds no decision");
  probe_.emplace(criterion_candidates(routes, cfg_.optim, cfg_.file));
  if (saved.contains("probe")) probe_->restore(saved["probe"], where);
  return routes;
}

// The end of the probe window: the candidates whose mean nr(G)/st(A) reaches the threshold go to
// Muon, with their AdamW state carried over (train/criterion.h).
void Training::decide_routing(StepResult& r) {
  decision_ = probe_->decide(step_, cfg_.optim.criterion.threshold);
  probe_.reset();
  const OptimConfig decided = decided_config(cfg_.optim, *decision_);
  routes_ = resolve_routing(model_->specs(), decided, cfg_.file, &warnings_);
  optimizer_ = switch_routing(*optimizer_, routes_, model_->param_slots(), decided,
                              comm_.world() > 1 ? &comm_ : nullptr, decision_->moved);
  optimizer_->set_op_clock(clock_);
  telemetry_.set_owners(telemetry_owners(routes_, comm_.world()));
  r.routing_decision = decision_;
}

void Training::set_op_clock(OpClock* clock) {
  clock_ = clock;
  model_->set_op_clock(clock);
  optimizer_->set_op_clock(clock);
}

void Training::next_batch() {
  if (loader_) {
    loader_->next(windows_.data());
  } else {
    for (int32_t& t : windows_) t = int32_t(rng_.below(uint64_t(cfg_.model.vocab_size)));
  }
  split_windows(windows_.data(), B_, T_, idx_.data(), tgt_.data());
}

StepResult Training::step(StepHooks* hooks, bool telemetry) {
  const auto t0 = Clock::now();
  const double comm_s0 = comm_.collective_seconds();
  const int64_t step = ++step_;
  const std::string dir = cfg_.run_dir();
  const bool probing = probe_ && step <= cfg_.optim.criterion.probe_steps;
  const bool measured = telemetry_.enabled() && (telemetry || probing || telemetry_.due(step));
  StepResult r;
  if (measured) telemetry_.begin();
  optimizer_->set_record_updates(measured);
  model_->zero_grads();
  for (int64_t micro = 0; micro < accum_; ++micro) {
    {
      InPhase p(hooks, Phase::data);
      next_batch();
    }
    {
      InPhase p(hooks, Phase::forward);
      r.loss += model_->forward(idx_.data(), tgt_.data()) / double(accum_);
    }
    if (measured) {
      InPhase p(hooks, Phase::telemetry);
      telemetry_.add_activations(*model_, idx_.data(), B_ * T_);
    }
    InPhase p(hooks, Phase::backward);
    model_->backward(1.0f / float(accum_));
  }
  {
    InPhase p(hooks, Phase::reduce);
    r.loss = comm_.sum(r.loss) / comm_.world();
    if (!std::isfinite(r.loss))
      fail(dir, "step ", step, ": the loss is ", std::isnan(r.loss) ? "NaN" : "infinite", kStopped);
    r.grad_norm = optimizer_->reduce_gradients(measured);
    if (!std::isfinite(r.grad_norm)) {
      const std::string bad = model_->first_nonfinite(true);
      fail(dir, "step ", step, ": non-finite gradient", bad.empty() ? "" : " in " + bad, kStopped);
    }
  }
  if (measured) {
    InPhase p(hooks, Phase::telemetry);
    telemetry_.add_gradients(*model_);
  }
  {
    InPhase p(hooks, Phase::reduce);
    if (cfg_.train.clip > 0 && r.grad_norm > cfg_.train.clip)
      model_->scale_grads(float(cfg_.train.clip / r.grad_norm));
  }
  {
    InPhase p(hooks, Phase::optimizer);
    r.lr_scale = lr_multiplier(cfg_.schedule, step - 1, cfg_.train.steps);
    optimizer_->step(step - 1, r.lr_scale);
    if (std::string bad = model_->first_nonfinite(false); !bad.empty())
      fail(dir, "step ", step, ": the update made ", bad, " non-finite", kStopped);
  }
  fault_point("step", step);
  tokens_ += tokens_per_step();
  if (measured) {
    InPhase p(hooks, Phase::telemetry);
    r.telemetry =
        telemetry_.finish(*model_, step, [&](size_t i) { return optimizer_->last_update(i); });
  }
  if (probing) {
    probe_->add(r.telemetry);
    if (step == cfg_.optim.criterion.probe_steps) decide_routing(r);
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.comm_s = comm_.collective_seconds() - comm_s0;
  return r;
}

double Training::evaluate() {
  if (!val_) return NAN;
  double total = 0;
  for (int64_t i = 0; i < val_->num_batches(); ++i) {
    val_->batch(i, windows_.data());
    split_windows(windows_.data(), B_, T_, idx_.data(), tgt_.data());
    total += model_->forward(idx_.data(), tgt_.data());
  }
  return comm_.sum(total) / double(val_->num_batches() * comm_.world());
}

bool Training::evaluation_due(bool last) const {
  const int64_t every = cfg_.train.eval_every;
  return val_.has_value() && (last || (every > 0 && step_ % every == 0));
}

bool Training::checkpoint_due(bool last) const {
  const int64_t every = cfg_.train.checkpoint_every;
  return last || (every > 0 && step_ % every == 0);
}

bool Training::log_due(bool last) const {
  return last || step_ % cfg_.train.log_every == 0;
}

std::string Training::save_checkpoint() {
  std::vector<SafetensorsTensor> optimizer_state = optimizer_->state_tensors();
  if (comm_.rank() != 0) return "";
  // Everything a checkpoint holds is finite, or it is not written: the weights are checked after
  // every update, the optimizer state here (huge learning rates can overflow Adam's v alone).
  for (const SafetensorsTensor& t : optimizer_state) {
    MG_CHECK(t.dtype == DType::f32, "optimizer state '", t.name, "' is not F32");
    const float* v = static_cast<const float*>(t.data);
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    if (!std::all_of(v, v + n, [](float x) { return std::isfinite(x); }))
      fail(cfg_.run_dir(), "step ", step_, ": the optimizer state '", t.name,
           "' holds a NaN or an Inf", kStopped);
  }
  nlohmann::json state = {{"tokens", tokens_},
                          {"elapsed_s", elapsed_s()},
                          {"optimizer", optimizer_->state_json()},
                          {"seed", cfg_.run.seed}};
  if (loader_) state["loader"] = loader_->position().to_json();
  if (decision_) state["criterion"] = {{"decision", decision_->to_json()}};
  if (probe_) state["criterion"] = {{"probe", probe_->to_json()}};
  return muongpt::save_checkpoint(cfg_.run_dir(), step_, model_->specs(), model_->params_host(),
                                  {std::move(optimizer_state), std::move(state), cfg_.to_toml()},
                                  cfg_.train.keep_checkpoints);
}

double Training::elapsed_s() const {
  return elapsed_before_ + std::chrono::duration<double>(Clock::now() - started_).count();
}

int64_t Training::tokens_per_step() const {
  return B_ * T_ * accum_ * comm_.world();
}

double Training::mfu(double seconds) const {
  if (!(peak_tflops_ > 0)) return NAN;
  return flops_per_token_ * double(tokens_per_step()) / seconds /
         (peak_tflops_ * 1e12 * comm_.world());
}

nlohmann::json Training::metrics(const StepResult& r, double val_loss) const {
  nlohmann::json rec = {{"step", step_},
                        {"tokens", tokens_},
                        {"train_loss", r.loss},
                        {"lr", r.lr_scale},
                        {"grad_norm", r.grad_norm},
                        {"tokens_per_s", double(tokens_per_step()) / r.seconds},
                        {"step_ms", r.seconds * 1e3},
                        {"elapsed_s", elapsed_s()},
                        {"mem_bytes", model_->memory_plan().total()}};
  if (std::isfinite(val_loss)) rec["val_loss"] = val_loss;
  if (!r.telemetry.is_null()) rec["telemetry_s"] = r.telemetry_s();
  if (const double m = mfu(r.seconds); std::isfinite(m)) rec["mfu"] = m;
  // NCCL only queues its collectives on the model's stream: their time is not measurable here.
  if (comm_.world() > 1 && comm_.buffers() == Device::cpu) rec["comm_ms"] = r.comm_s * 1e3;
  return rec;
}

std::string Training::describe() const {
  char buf[768];
  const std::string peak = [&] {
    if (!(peak_tflops_ > 0)) return std::string();
    char p[64];
    std::snprintf(p, sizeof p, "; MFU against %g TFLOP/s per device", peak_tflops_);
    return std::string(p);
  }();
  std::snprintf(
      buf, sizeof buf,
      "model: %lld parameters on %s, %s; optimizer %.1f MiB, telemetry %.1f MiB; batch %lld x "
      "%lld tokens x %lld micro-steps x %d ranks = %lld tokens/step; %s%s",
      (long long)param_count(model_->specs()), model_->describe().c_str(),
      model_->memory_plan().describe().c_str(), optimizer_->memory_bytes() / 1048576.0,
      telemetry_.memory_bytes() / 1048576.0, (long long)B_, (long long)T_, (long long)accum_,
      comm_.world(), (long long)tokens_per_step(),
      loader_ ? (std::to_string(loader_->files().size()) + " train shards, " +
                 std::to_string(loader_->total_tokens()) + " tokens")
                    .c_str()
              : "random token ids",
      peak.c_str());
  return buf;
}

}  // namespace muongpt
