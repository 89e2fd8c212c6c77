#include "train/trainer.h"

#include <algorithm>
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
#include "optim/routing.h"
#include "train/checkpoint.h"
#include "train/fault.h"
#include "train/job.h"
#include "train/run_dir.h"
#include "train/run_log.h"
#include "train/training.h"

namespace muongpt {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::atomic<int> g_stop_signal{0};
void on_stop_signal(int sig) {
  g_stop_signal = sig;
  std::signal(sig, SIG_DFL);  // the second one ends the process at once
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

// What the run shows and keeps: on rank 0 the run directory's config.toml, routing.tsv, log.txt,
// metrics.jsonl and ranks.jsonl, and the console's lines (the other ranks print nothing).
class RunLog {
 public:
  RunLog(const RunConfig& cfg, const Training& run, bool lead, const std::string& resume,
         const std::vector<std::string>& abandoned, const Comm& comm)
      : cfg_(cfg), run_(run), first_step_(run.steps_done()), t0_(Clock::now()) {
    const fs::path dir = cfg.run_dir();
    if (lead) {
      write_file(dir / "config.toml", cfg.to_toml());
      write_routing(run);
      console_.emplace((dir / "log.txt").string());
      metrics_.emplace((dir / "metrics.jsonl").string(), first_step_);
      ranks_.emplace((dir / "ranks.jsonl").string(), first_step_);
    } else {
      console_.emplace();
    }
    for (const auto& w : run.warnings()) line("muongpt: warning: " + w);
    for (const auto& a : abandoned)
      line("muongpt: note: resuming from an older checkpoint: set aside " + a);
    line(fmt("muongpt train: %s -> %s (%s)", cfg.file.c_str(), dir.c_str(),
             resume.empty() ? "new run" : ("resuming " + resume).c_str()));
    if (comm.world() > 1)
      line(fmt("distributed: %d ranks over %s (collective timeout %g s)", comm.world(),
               std::string(comm.backend()).c_str(), cfg.device.comm_timeout));
    line(run.describe());
    line(routing_table(run.routes()));
  }

  void line(const std::string& text) { console_->line(text); }

  // After each step: telemetry to ranks.jsonl, and a metrics record with a console line when
  // due (else an overwritten progress line). `val` is the validation loss when evaluated.
  // routing.tsv, and routing.json once the criterion routing has decided.
  void write_routing(const Training& run) const {
    const fs::path dir = cfg_.run_dir();
    write_file(dir / "routing.tsv", routing_tsv(run.routes()));
    if (run.routing_decision())
      write_file(dir / "routing.json", run.routing_decision()->to_json().dump(2) + "\n");
  }

  void decided(const CriterionDecision& d) {
    if (metrics_) write_routing(run_);  // rank 0
    std::string moved;
    for (const std::string& name : d.moved) moved += (moved.empty() ? "" : ", ") + name;
    line(
        fmt("routing by the criterion after step %lld: %zu of %zu candidates have mean nr(G)/st(A) "
            ">= %g and move to Muon%s%s",
            (long long)d.step, d.moved.size(), d.ratios.size(), d.threshold,
            moved.empty() ? "" : ": ", moved.c_str()));
    for (const auto& [name, ratio] : d.ratios)
      line(fmt(
          "  %-24s mean nr/st %8.3f  %s", name.c_str(), ratio,
          std::find(d.moved.begin(), d.moved.end(), name) != d.moved.end() ? "-> muon" : "stays"));
    line(routing_table(run_.routes()));
  }

  void step(const StepResult& r, std::optional<double> val, bool last) {
    const int64_t step = run_.steps_done(), total = cfg_.train.steps;
    const double val_loss = val.value_or(NAN);
    train_loss_ = r.loss;
    if (val) val_loss_ = *val;
    telemetry_s_ += r.telemetry_s();
    if (ranks_ && !r.telemetry.is_null()) ranks_->write(r.telemetry);
    if (r.routing_decision) decided(*r.routing_decision);
    const double elapsed = seconds_since(t0_), mfu = run_.mfu(r.seconds);
    const std::string status = fmt(
        "step %lld/%lld | loss %.4f | lr x%.3f | %.0f tok/s%s | %.0f ms | ETA %s%s",
        (long long)step, (long long)total, r.loss, r.lr_scale, run_.tokens_per_step() / r.seconds,
        std::isfinite(mfu) ? fmt(" | MFU %.1f%%", 100 * mfu).c_str() : "", r.seconds * 1e3,
        format_duration(elapsed / double(step - first_step_) * double(total - step)).c_str(),
        val ? fmt(" | val %.4f", val_loss).c_str() : "");
    if (run_.log_due(last) || step == first_step_ + 1 || val) {
      if (metrics_) metrics_->write(run_.metrics(r, val_loss));
      line(status);
    } else {
      console_->progress(status);
    }
  }

  TrainSummary finish(bool interrupted) {
    const TrainSummary s{cfg_.run_dir(), first_step_,        run_.steps_done(), train_loss_,
                         val_loss_,      seconds_since(t0_), interrupted};
    line(
        fmt("done: steps %lld..%lld in %s, train loss %.4f, val loss %.4f, telemetry "
            "%.1f%% of the time; run in %s",
            (long long)s.first_step + 1, (long long)s.last_step, format_duration(s.seconds).c_str(),
            s.train_loss, s.val_loss, 100.0 * telemetry_s_ / std::max(s.seconds, 1e-9),
            s.run_dir.c_str()));
    return s;
  }

 private:
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }

  const RunConfig& cfg_;
  const Training& run_;
  int64_t first_step_;
  Clock::time_point t0_;
  std::optional<Console> console_;
  std::optional<JsonlWriter> metrics_, ranks_;
  double train_loss_ = NAN, val_loss_ = NAN, telemetry_s_ = 0;
};

}  // namespace

TrainSummary train(const RunConfig& cfg, const TrainOptions& options, Comm* job_comm) {
  const RankInfo info = discover_ranks(options.ranks);
  share_cpu_threads(info.local_world);
  std::printf("muongpt: %s, backend %s (%d CPU threads)\n", info.describe().c_str(),
              resolve_backend(cfg.device.backend).c_str(), cpu_threads());
  std::fflush(stdout);
  std::unique_ptr<Comm> own_comm;
  if (!job_comm) own_comm = make_job_comm(info, cfg, resolve_backend(cfg.device.backend));
  Comm* comm = job_comm ? job_comm : own_comm.get();
  fault_rank() = comm->rank();
  const bool lead = comm->rank() == 0;  // rank 0 writes the run directory and prints
  const std::string dir = cfg.run_dir();
  if (options.resume == "latest" && !fs::exists(dir))  // before the lock creates it
    fail(dir, "has no checkpoint to resume from (--resume latest)");
  std::optional<RunLock> lock;  // held while this run trains
  if (lead) lock.emplace(dir);
  comm->barrier();  // no rank looks at the checkpoints before rank 0 holds the run
  const std::string resume = resolve_resume(options.resume, dir);
  comm->barrier();  // every rank has looked at the checkpoints before rank 0 changes anything
  Training run(cfg, *comm, {.local_rank = info.local_rank, .resume = resume});
  const auto abandoned =
      lead ? set_aside_checkpoints_after(dir, run.steps_done()) : std::vector<std::string>{};
  RunLog log(cfg, run, lead, resume, abandoned, *comm);

  StopSignals stop_signals;  // the loop: one optimizer step per iteration
  bool stop = false;
  while (run.steps_done() < cfg.train.steps && !stop) {
    const StepResult r = run.step();
    const bool last = run.steps_done() == cfg.train.steps;
    stop = comm->any(g_stop_signal != 0);
    log.step(r, run.evaluation_due(last) ? std::optional(run.evaluate()) : std::nullopt, last);
    if (run.checkpoint_due(last || stop)) log.line("checkpoint: " + run.save_checkpoint());
  }
  if (stop)
    log.line(fmt("stopped by signal %d after step %lld; resume with --resume latest",
                 int(g_stop_signal), (long long)run.steps_done()));
  return log.finish(stop);
}

}  // namespace muongpt
