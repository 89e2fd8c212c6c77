#include "train/trainer.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "core/comm.h"
#include "core/error.h"
#include "core/parallel.h"
#include "data/loader.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/fault.h"
#include "train/job.h"
#include "train/run_log.h"
#include "train/telemetry.h"
#include "train/train_model.h"

namespace muongpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<int> g_stop_signal{0};
void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

// SIGINT/SIGTERM finish the current step, save a checkpoint and stop (a second one kills).
struct StopSignals {
  StopSignals() {
    g_stop_signal = 0;
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
};

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
  if (!out) fail(p.string(), "cannot write");
}

std::string fmt(const char* format, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

constexpr const char* kStopped = "; stopping (the last checkpoint is intact)";

// What one optimizer step produced.
struct StepResult {
  double loss = 0, grad_norm = 0, lr_scale = 0, telemetry_s = 0, seconds = 0;
  double comm_s = 0;      // inside collectives (host-memory communicators; see metrics())
  bool measured = false;  // telemetry ran
};

// One training run: everything the loop needs, built from the config (and a checkpoint).
class Run {
 public:
  Run(const RunConfig& cfg, const std::string& resume_dir, Comm& comm, int local_rank)
      : cfg_(cfg),
        comm_(comm),
        dir_(cfg.run_dir()),
        B_(cfg.data.batch_size),
        T_(cfg.seq()),
        accum_(cfg.data.grad_accum),
        model_(make_train_model(cfg.model, B_, T_, cfg.device, local_rank, cfg.file)),
        routes_(init_routes()),
        optimizer_(Optimizer::create(routes_, model_->param_slots(), cfg.optim,
                                     comm.world() > 1 ? &comm : nullptr)),
        loader_({.pattern = cfg.data.train,
                 .batch = B_,
                 .seq = T_,
                 .rank = comm.rank(),
                 .world = comm.world(),
                 .mode = parse_sample_mode(cfg.data.mode, cfg.file + ": [data] mode"),
                 .seed = static_cast<uint64_t>(cfg.run.seed)}),
        telemetry_(*model_, cfg.telemetry.every, &comm, telemetry_owners(routes_, comm.world())),
        flops_per_token_(train_flops_per_token(cfg.model, model_->specs(), T_)),
        peak_tflops_(run_peak_tflops(cfg.device, *model_)),
        windows_(B_ * (T_ + 1)),
        idx_(B_ * T_),
        tgt_(B_ * T_) {
    if (!cfg.data.val.empty())
      val_.emplace(cfg.data.val, cfg.data.val_tokens, B_, T_, comm.rank(), comm.world());
    model_->init_params(static_cast<uint64_t>(cfg.run.seed));
    if (cfg.telemetry.every > 0) {  // the ΔW buffers now, not inside step 1
      optimizer_->set_record_updates(true);
      optimizer_->set_record_updates(false);
    }
    if (resume_dir.empty()) return;
    Checkpoint ck(resume_dir);
    check_same_model(ck.model_config(), cfg.model, resume_dir);
    model_->set_params(ck.weights(cfg.model));
    optimizer_->load_state(ck.optimizer(), ck.state().value("optimizer", nlohmann::json()),
                           resume_dir);
    loader_.restore(LoaderPosition::from_json(ck.state().at("loader"), resume_dir));
    step_ = ck.state().at("step").get<int64_t>();
    tokens_ = ck.state().at("tokens").get<int64_t>();
  }

  int64_t step() const { return step_; }
  int64_t tokens_per_step() const { return B_ * T_ * accum_ * comm_.world(); }
  // Model FLOP utilisation of a step that took `seconds` (docs/bench.md, "The FLOP count"); NaN
  // when the peak is unknown.
  double mfu(double seconds) const {
    if (!(peak_tflops_ > 0)) return NAN;
    return flops_per_token_ * double(tokens_per_step()) / seconds /
           (peak_tflops_ * 1e12 * comm_.world());
  }
  const std::vector<Route>& routes() const { return routes_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  std::string describe() const {
    const std::string peak =
        peak_tflops_ > 0 ? fmt("; MFU against %g TFLOP/s per device", peak_tflops_) : "";
    return fmt(
        "model: %lld parameters on %s, %s; optimizer %.1f MiB, telemetry %.1f MiB; batch %lld x "
        "%lld tokens x %lld micro-steps x %d ranks = %lld tokens/step; %zu train shards, %lld "
        "tokens%s",
        (long long)param_count(model_->specs()), model_->device().c_str(),
        model_->describe_memory().c_str(), optimizer_->memory_bytes() / 1048576.0,
        telemetry_.memory_bytes() / 1048576.0, (long long)B_, (long long)T_, (long long)accum_,
        comm_.world(), (long long)tokens_per_step(), loader_.files().size(),
        (long long)loader_.total_tokens(), peak.c_str());
  }

  // Forward/backward over the micro-batches, the gradient average over the ranks, checks,
  // clipping, the update, telemetry. Collective: every rank runs it.
  StepResult train_step(JsonlWriter* ranks) {
    const auto t0 = Clock::now();
    const double comm_s0 = comm_.collective_seconds();
    const int64_t step = ++step_;
    StepResult r;
    r.measured = telemetry_.due(step);
    if (r.measured) telemetry_.begin();
    optimizer_->set_record_updates(r.measured);
    model_->zero_grads();
    for (int64_t micro = 0; micro < accum_; ++micro) {
      loader_.next(windows_.data());
      split_windows(windows_.data(), B_, T_, idx_.data(), tgt_.data());
      r.loss += model_->forward(idx_.data(), tgt_.data()) / double(accum_);
      if (r.measured) telemetry_.add_activations(*model_, idx_.data(), B_ * T_);
      model_->backward(1.0f / float(accum_));
    }
    r.loss = comm_.sum(r.loss) / comm_.world();
    if (!std::isfinite(r.loss))
      fail(dir_, "step ", step, ": the loss is ", std::isnan(r.loss) ? "NaN" : "infinite",
           kStopped);
    r.grad_norm = optimizer_->reduce_gradients(r.measured);
    if (!std::isfinite(r.grad_norm)) {
      const std::string bad = model_->first_nonfinite(true);
      fail(dir_, "step ", step, ": non-finite gradient", bad.empty() ? "" : " in " + bad, kStopped);
    }
    if (r.measured) telemetry_.add_gradients(*model_);
    if (cfg_.train.clip > 0 && r.grad_norm > cfg_.train.clip)
      model_->scale_grads(float(cfg_.train.clip / r.grad_norm));
    r.lr_scale = lr_multiplier(cfg_.schedule, step - 1, cfg_.train.steps);
    optimizer_->step(step - 1, r.lr_scale);
    if (std::string bad = model_->first_nonfinite(false); !bad.empty())
      fail(dir_, "step ", step, ": the update made ", bad, " non-finite", kStopped);
    fault_point("step", step);
    tokens_ += tokens_per_step();
    if (r.measured) {
      auto rec =
          telemetry_.finish(*model_, step, [&](size_t i) { return optimizer_->last_update(i); });
      r.telemetry_s = rec["seconds"].get<double>();
      if (ranks) ranks->write(rec);
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.comm_s = comm_.collective_seconds() - comm_s0;
    return r;
  }

  // Mean loss over the validation tokens (NaN without a val set).
  double evaluate() {
    if (!val_) return NAN;
    double total = 0;
    for (int64_t i = 0; i < val_->num_batches(); ++i) {
      val_->batch(i, windows_.data());
      split_windows(windows_.data(), B_, T_, idx_.data(), tgt_.data());
      total += model_->forward(idx_.data(), tgt_.data());
    }
    return comm_.sum(total) / double(val_->num_batches() * comm_.world());
  }
  bool has_val() const { return val_.has_value(); }

  nlohmann::json metrics(const StepResult& r, double val_loss) const {
    nlohmann::json rec = {{"step", step_},
                          {"tokens", tokens_},
                          {"train_loss", r.loss},
                          {"lr", r.lr_scale},
                          {"grad_norm", r.grad_norm},
                          {"tokens_per_s", double(tokens_per_step()) / r.seconds},
                          {"step_ms", r.seconds * 1e3},
                          {"mem_bytes", model_->memory_bytes()}};
    if (std::isfinite(val_loss)) rec["val_loss"] = val_loss;
    if (r.measured) rec["telemetry_s"] = r.telemetry_s;
    if (const double m = mfu(r.seconds); std::isfinite(m)) rec["mfu"] = m;
    // NCCL only queues its collectives on the model's stream: their time is not measurable here.
    if (comm_.world() > 1 && comm_.buffers() == Device::cpu) rec["comm_ms"] = r.comm_s * 1e3;
    return rec;
  }

  // Collective (the optimizer state is gathered); rank 0 writes. Returns the directory.
  std::string save_checkpoint_now() {
    std::vector<SafetensorsTensor> optimizer_state = optimizer_->state_tensors();
    if (comm_.rank() != 0) return "";
    nlohmann::json state = {{"tokens", tokens_},
                            {"loader", loader_.position().to_json()},
                            {"optimizer", optimizer_->state_json()},
                            {"seed", cfg_.run.seed}};
    return save_checkpoint(dir_, step_, model_->specs(), model_->params_host(),
                           {std::move(optimizer_state), std::move(state), cfg_.to_toml()},
                           cfg_.train.keep_checkpoints);
  }

 private:
  std::vector<Route> init_routes() {
    return resolve_routing(model_->specs(), cfg_.optim, cfg_.file, &warnings_);
  }

  const RunConfig& cfg_;
  Comm& comm_;
  std::string dir_;
  int64_t B_, T_, accum_;
  std::unique_ptr<TrainModel> model_;
  std::vector<std::string> warnings_;
  std::vector<Route> routes_;
  std::unique_ptr<Optimizer> optimizer_;
  DataLoader loader_;
  std::optional<ValLoader> val_;
  RankTelemetry telemetry_;
  double flops_per_token_, peak_tflops_;
  std::vector<int32_t> windows_, idx_, tgt_;  // [B, T+1], [B, T], [B, T]
  int64_t step_ = 0, tokens_ = 0;
};

// "latest" → the run's newest checkpoint; refuses to start a fresh run over existing ones.
std::string resolve_resume(const std::string& resume, const std::string& run_dir) {
  if (resume == "latest") {
    std::string dir = latest_checkpoint(run_dir);
    if (dir.empty()) fail(run_dir, "has no checkpoint to resume from (--resume latest)");
    return dir;
  }
  if (resume.empty() && !list_checkpoints(run_dir).empty())
    fail(run_dir,
         "already holds checkpoints: pass --resume latest to continue it, or choose another "
         "[run] name");
  return resume;
}

}  // namespace

TrainSummary train(const RunConfig& cfg, const TrainOptions& options) {
  const RankInfo info = discover_ranks(options.ranks);
  const std::string backend = resolve_backend(cfg.device.backend);
  share_cpu_threads(info.local_world);
  std::printf("muongpt: %s, backend %s (%d CPU threads)\n", info.describe().c_str(),
              backend.c_str(), cpu_threads());
  std::fflush(stdout);
  std::unique_ptr<Comm> comm = make_job_comm(info, cfg, backend);
  fault_rank() = comm->rank();
  const bool lead = comm->rank() == 0;  // rank 0 writes the run directory and prints
  const std::string dir = cfg.run_dir(), resume = resolve_resume(options.resume, dir);
  comm->barrier();  // every rank has looked at the checkpoints before rank 0 changes anything
  if (lead) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail(dir, "cannot create the run directory: ", ec.message());
  }
  Run run(cfg, resume, *comm, info.local_rank);
  const auto abandoned =
      lead ? set_aside_checkpoints_after(dir, run.step()) : std::vector<std::string>{};

  std::optional<Console> console_file;
  std::optional<JsonlWriter> metrics_file, ranks_file;
  if (lead) {
    write_file(fs::path(dir) / "config.toml", cfg.to_toml());
    write_file(fs::path(dir) / "routing.tsv", routing_tsv(run.routes()));
    console_file.emplace((fs::path(dir) / "log.txt").string());
    metrics_file.emplace((fs::path(dir) / "metrics.jsonl").string(), run.step());
    ranks_file.emplace((fs::path(dir) / "ranks.jsonl").string(), run.step());
  } else {
    console_file.emplace();
  }
  Console& console = *console_file;
  JsonlWriter* ranks = ranks_file ? &*ranks_file : nullptr;
  for (const auto& w : run.warnings()) console.line("muongpt: warning: " + w);
  for (const auto& a : abandoned)
    console.line("muongpt: note: resuming from an older checkpoint: set aside " + a);
  console.line(fmt("muongpt train: %s -> %s (%s)", cfg.file.c_str(), dir.c_str(),
                   resume.empty() ? "new run" : ("resuming " + resume).c_str()));
  if (comm->world() > 1)
    console.line(fmt("distributed: %d ranks over %s (collective timeout %g s)", comm->world(),
                     std::string(comm->backend()).c_str(), cfg.device.comm_timeout));
  console.line(run.describe());
  console.line(routing_table(run.routes()));

  // The loop: one optimizer step per iteration.
  StopSignals stop_signals;
  TrainSummary summary{dir, run.step(), run.step(), NAN, NAN, 0, false};
  const auto t_run = Clock::now();
  double telemetry_s = 0;
  const int64_t total = cfg.train.steps;
  while (run.step() < total) {
    const StepResult r = run.train_step(ranks);
    const int64_t step = run.step();
    const bool last = step == total, stop = comm->any(g_stop_signal != 0);
    const bool eval =
        run.has_val() && (last || (cfg.train.eval_every > 0 && step % cfg.train.eval_every == 0));
    const double val_loss = eval ? run.evaluate() : NAN;
    telemetry_s += r.telemetry_s;
    summary = {dir, summary.first_step, step, r.loss, eval ? val_loss : summary.val_loss, 0, stop};

    const double elapsed = std::chrono::duration<double>(Clock::now() - t_run).count();
    const double mfu = run.mfu(r.seconds);
    const std::string status = fmt(
        "step %lld/%lld | loss %.4f | lr x%.3f | %.0f tok/s%s | %.0f ms | ETA %s%s",
        (long long)step, (long long)total, r.loss, r.lr_scale, run.tokens_per_step() / r.seconds,
        std::isfinite(mfu) ? fmt(" | MFU %.1f%%", 100 * mfu).c_str() : "", r.seconds * 1e3,
        format_duration(elapsed / double(step - summary.first_step) * double(total - step)).c_str(),
        eval ? fmt(" | val %.4f", val_loss).c_str() : "");
    if (step % cfg.train.log_every == 0 || step == summary.first_step + 1 || last || eval) {
      if (metrics_file) metrics_file->write(run.metrics(r, val_loss));
      console.line(status);
    } else {
      console.progress(status);
    }
    if (last || stop || (cfg.train.checkpoint_every > 0 && step % cfg.train.checkpoint_every == 0))
      console.line("checkpoint: " + run.save_checkpoint_now());
    if (stop) {
      console.line(fmt("stopped by signal %d after step %lld; resume with --resume latest",
                       int(g_stop_signal), (long long)step));
      break;
    }
  }
  summary.seconds = std::chrono::duration<double>(Clock::now() - t_run).count();
  console.line(
      fmt("done: steps %lld..%lld in %s, train loss %.4f, val loss %.4f, telemetry "
          "%.1f%% of the time; run in %s",
          (long long)summary.first_step + 1, (long long)summary.last_step,
          format_duration(summary.seconds).c_str(), summary.train_loss, summary.val_loss,
          100.0 * telemetry_s / std::max(summary.seconds, 1e-9), dir.c_str()));
  return summary;
}

}  // namespace muongpt
