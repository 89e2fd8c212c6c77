// `muongpt bench --config FILE [--set k=v]... [--steps N] [--warmup W] [--json FILE]`: the
// steady-state speed of a training step, built from the config exactly as the trainer builds it
// (model, routing, optimizer, loader, communicator), split into data, forward, backward,
// optimizer, communication and telemetry; plus a FLOP rate (formula in docs/bench.md) and the
// peak RSS. One JSON object with the same figures goes to --json FILE ("-" for stdout). Under a
// launcher (mpirun, torchrun) every rank takes part and rank 0 reports.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "data/loader.h"
#include "model/params.h"
#include "optim/dualizer.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "optim/schedule.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/job.h"
#include "train/telemetry.h"
#include "train/train_model.h"

namespace muongpt {
namespace {

using Clock = std::chrono::steady_clock;

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Per-phase milliseconds of the timed steps.
struct Phases {
  std::vector<double> data, forward, backward, optimizer, communication, other, step;
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// How many of the steps 1..steps the telemetry runs at (RankTelemetry::due).
int64_t telemetry_steps(int64_t every, int64_t steps) {
  if (every <= 0) return 0;
  int64_t n = 0;
  for (int64_t s = 1; s <= steps; ++s) n += (s <= 2 || s % every == 0);
  return n;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

// Where the batches come from: the config's train shards, or uniform random ids.
class Batches {
 public:
  Batches(const RunConfig& cfg, bool random, int64_t B, int64_t T, const Comm& comm)
      : B_(B),
        T_(T),
        vocab_(cfg.model.vocab_size),
        windows_(B * (T + 1)),
        rng_(uint64_t(cfg.run.seed) + uint64_t(comm.rank())) {
    if (random) return;
    if (cfg.data.train.empty())
      fail(cfg.file, "[data] train is empty; give shards or use bench --random-data");
    loader_.emplace(
        LoaderOptions{.pattern = cfg.data.train,
                      .batch = B,
                      .seq = T,
                      .rank = comm.rank(),
                      .world = comm.world(),
                      .mode = parse_sample_mode(cfg.data.mode, cfg.file + ": [data] mode"),
                      .seed = static_cast<uint64_t>(cfg.run.seed)});
  }
  bool random() const { return !loader_.has_value(); }

  void next(int32_t* idx, int32_t* tgt) {
    if (loader_) {
      loader_->next(windows_.data());
    } else {
      for (int32_t& t : windows_) t = int32_t(rng_.below(uint64_t(vocab_)));
    }
    split_windows(windows_.data(), B_, T_, idx, tgt);
  }

 private:
  int64_t B_, T_, vocab_;
  std::vector<int32_t> windows_;
  Rng rng_;
  std::optional<DataLoader> loader_;
};

// Milliseconds of one dualize() call per Muon matrix this rank owns (the optimizer's
// Newton–Schulz work), timed outside the optimizer on random matrices of the same shapes, run as
// the optimizer runs them (parallel_tasks, largest first, a workspace per worker): median of
// `reps` passes.
double dualize_ms(const std::vector<Route>& routes, const OptimConfig& optim, const Comm& comm,
                  int reps) {
  DualizerSpec ns_default;
  ns_default.coeffs = parse_ns_coeffs(optim.muon.ns_coeffs, "bench", "[optim.muon] ns_coeffs");
  ns_default.ns_steps = int(optim.muon.ns_steps);
  ns_default.ns_eps = optim.muon.ns_eps;
  std::vector<std::pair<DualizerSpec, const Route*>> muon;
  const std::vector<int> owner = muon_owner_ranks(routes, comm.world());
  int64_t largest = 0;
  for (size_t i = 0; i < routes.size(); ++i) {
    const Route& r = routes[i];
    if (r.optimizer != "muon" || owner[i] != comm.rank()) continue;
    muon.emplace_back(parse_dualizer(r.dualizer, ns_default, "bench", r.name), &r);
    largest = std::max(largest, r.shape[0] * r.shape[1]);
  }
  if (muon.empty()) return 0;
  std::stable_sort(muon.begin(), muon.end(), [](const auto& a, const auto& b) {  // largest first
    return a.second->shape[0] * a.second->shape[1] > b.second->shape[0] * b.second->shape[1];
  });
  std::vector<float> x(largest);
  Rng rng(7);
  for (float& v : x) v = float(0.02 * rng.normal());
  struct Worker {
    std::vector<float> out;
    DualizerWorkspace ws;
  };
  std::vector<Worker> workers(size_t(cpu_threads()), Worker{std::vector<float>(largest), {}});
  std::vector<double> passes;
  for (int rep = 0; rep < reps + 1; ++rep) {
    const auto t0 = Clock::now();
    parallel_tasks(int64_t(muon.size()), [&](int64_t i, int w) {
      const auto& [spec, r] = muon[size_t(i)];
      Worker& wk = workers[size_t(w)];
      dualize(spec, x.data(), wk.out.data(), r->shape[0], r->shape[1], &wk.ws);
    });
    if (rep > 0) passes.push_back(since_ms(t0));  // the first pass grows the workspaces
  }
  return median(passes);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  cxxopts::Options opts("muongpt bench",
                        "Time steady-state training steps of a config: tokens/s, the step split "
                        "into data, forward, backward, optimizer (Newton-Schulz timed separately), "
                        "communication and telemetry, a FLOP rate (docs/bench.md) and peak RSS. "
                        "Several ranks: mpirun -np N muongpt bench ... (rank 0 reports).");
  opts.add_options()("c,config", "run config (TOML)", cxxopts::value<std::string>())(
      "s,set", "override a config key: section.key=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())("steps", "timed steps",
                                                  cxxopts::value<int64_t>()->default_value("10"))(
      "warmup", "untimed warm-up steps first", cxxopts::value<int64_t>()->default_value("2"))(
      "random-data", "uniform random token ids instead of the [data] train shards")(
      "peak-gflops",
      "one rank's peak GFLOP/s (its GPU or its CPU cores), for the MFU (0: [device] "
      "peak_tflops, else the GPU's from a table; none on a CPU)",
      cxxopts::value<double>()->default_value("0"))(
      "json", "also write the figures as one JSON object to FILE ('-' = stdout only JSON)",
      cxxopts::value<std::string>())("h,help", "show this help");
  add_rank_options(opts);
  auto args = opts.parse(argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("config")) fail("bench", "--config FILE is required (see --help)");
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  const RunConfig cfg = load_run_config(args["config"].as<std::string>(), sets);
  const int64_t steps = args["steps"].as<int64_t>();
  const int64_t warmup = args["warmup"].as<int64_t>();
  if (steps < 1) fail("bench", "--steps must be at least 1, got ", steps);
  if (warmup < 0) fail("bench", "--warmup must be at least 0, got ", warmup);
  const std::string json_path = args.count("json") ? args["json"].as<std::string>() : "";
  const bool json_only = json_path == "-";

  const RankInfo info = discover_ranks(rank_flags(args));
  share_cpu_threads(info.local_world);
  const std::unique_ptr<Comm> comm = make_job_comm(info, cfg, resolve_backend(cfg.device.backend));
  const int world = comm->world();
  const bool lead = comm->rank() == 0;  // rank 0 prints and writes the JSON
  const int64_t B = cfg.data.batch_size, T = cfg.seq(), accum = cfg.data.grad_accum;
  const auto model = make_train_model(cfg.model, B, T, cfg.device, info.local_rank, cfg.file);
  const bool on_cpu = model->device() == "cpu";
  std::vector<std::string> warnings;
  const auto routes = resolve_routing(model->specs(), cfg.optim, cfg.file, &warnings);
  auto optimizer =
      Optimizer::create(routes, model->param_slots(), cfg.optim, world > 1 ? comm.get() : nullptr);
  Batches batches(cfg, args.count("random-data") > 0, B, T, *comm);
  model->init_params(static_cast<uint64_t>(cfg.run.seed));
  std::vector<int32_t> idx(B * T), tgt(B * T);

  // One trainer step (without telemetry, checkpoints or evaluation), timed by phase.
  int64_t step = 0;
  double last_loss = 0;
  auto train_step = [&](Phases* ph) {
    const auto t_step = Clock::now();
    const double comm_s = comm->collective_seconds();
    double data = 0, fwd = 0, bwd = 0;
    model->zero_grads();
    double loss = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      auto t0 = Clock::now();
      batches.next(idx.data(), tgt.data());
      data += since_ms(t0);
      t0 = Clock::now();
      loss += model->forward(idx.data(), tgt.data()) / double(accum);  // waits for the GPU
      fwd += since_ms(t0);
      t0 = Clock::now();
      model->backward(1.0f / float(accum));
      model->synchronize();
      bwd += since_ms(t0);
    }
    loss = comm->sum(loss) / world;            // as the trainer does: the mean over the ranks,
    (void)optimizer->reduce_gradients(false);  // the gradients' sum over the ranks and their norm
    const auto t_opt = Clock::now();
    optimizer->step(step, lr_multiplier(cfg.schedule, step, cfg.train.steps));
    model->synchronize();
    const double opt = since_ms(t_opt);
    ++step;
    last_loss = loss;
    if (!std::isfinite(loss)) fail("bench", "step ", step, ": the loss is not finite");
    if (ph) {
      ph->data.push_back(data);
      ph->forward.push_back(fwd);
      ph->backward.push_back(bwd);
      ph->optimizer.push_back(opt);
      ph->communication.push_back((comm->collective_seconds() - comm_s) * 1e3);
      const double total = since_ms(t_step);
      ph->step.push_back(total);
      ph->other.push_back(std::max(0.0, total - data - fwd - bwd - opt));
    }
  };

  for (int64_t i = 0; i < warmup; ++i) train_step(nullptr);
  Phases ph;
  for (int64_t i = 0; i < steps; ++i) train_step(&ph);

  // One telemetry step, with only the telemetry calls (and the update recording) timed; the
  // second of two, so that first-use costs (GEMM plans, solver set-up) stay out of the figure.
  double telemetry_ms = 0;
  struct {
    double grams = 0, gradients = 0, recording = 0, finish = 0;
  } tel;  // its parts
  if (cfg.telemetry.every > 0) {
    RankTelemetry telemetry(*model, cfg.telemetry.every, comm.get(),
                            telemetry_owners(routes, world));
    for (int rep = 0; rep < 2; ++rep) {
      model->zero_grads();
      batches.next(idx.data(), tgt.data());
      auto t0 = Clock::now();
      telemetry.begin();
      tel.grams = since_ms(t0);
      model->forward(idx.data(), tgt.data());
      model->synchronize();
      t0 = Clock::now();
      telemetry.add_activations(*model, idx.data(), B * T);
      tel.grams += since_ms(t0);
      model->backward(1.0f);
      (void)optimizer->reduce_gradients(true);  // every rank holds the averaged gradients
      model->synchronize();
      t0 = Clock::now();
      telemetry.add_gradients(*model);
      tel.gradients = since_ms(t0);
      optimizer->set_record_updates(true);
      t0 = Clock::now();
      optimizer->step(step, lr_multiplier(cfg.schedule, step, cfg.train.steps));
      model->synchronize();
      tel.recording = std::max(0.0, since_ms(t0) - median(ph.optimizer));
      t0 = Clock::now();
      telemetry.finish(*model, step + 1, [&](size_t i) { return optimizer->last_update(i); });
      tel.finish = since_ms(t0);
      optimizer->set_record_updates(false);
    }
    telemetry_ms = tel.grams + tel.gradients + tel.recording + tel.finish;
  }
  // Newton–Schulz timed apart with the CPU dualizers: meaningless for a GPU run (NaN → null).
  const double ns_ms = on_cpu ? dualize_ms(routes, cfg.optim, *comm, 3) : NAN;

  const auto& specs = model->specs();
  const int64_t n_total = param_count(specs);
  const int64_t n_flop = matmul_param_count(cfg.model, specs);
  const double flops_per_token = train_flops_per_token(cfg.model, specs, T);
  const int64_t tokens_per_step = B * T * accum * world;

  const double step_ms = median(ph.step);
  const double tokens_per_s = double(tokens_per_step) / (step_ms / 1e3);
  const double gflops = flops_per_token * tokens_per_s / 1e9;
  const double peak = args["peak-gflops"].as<double>() > 0
                          ? args["peak-gflops"].as<double>()
                          : 1e3 * run_peak_tflops(cfg.device, *model);
  const int64_t run_steps = cfg.train.steps;
  const int64_t tel_steps = telemetry_steps(cfg.telemetry.every, run_steps);
  const double tel_amortised = telemetry_ms * double(tel_steps) / double(run_steps);
  // A device-memory communicator only queues its collectives on the model's stream, so their
  // time is not separable from the compute around them (NaN → null).
  const double comm_ms = comm->buffers() == Device::cpu ? median(ph.communication) : NAN;

  nlohmann::json j = {
      {"tool", "muongpt"},
      {"config", cfg.file},
      {"device", model->device()},
      {"model_mib", double(model->memory_bytes()) / 1048576.0},
      {"data", batches.random() ? "random" : "shards"},
      {"threads", cpu_threads()},
      {"world", world},
      {"comm", std::string(comm->backend())},
      {"gemm", gemm_uses_cblas() ? "cblas" : "loops"},
      {"batch", B},
      {"seq", T},
      {"grad_accum", accum},
      {"tokens_per_step", tokens_per_step},
      {"warmup", warmup},
      {"steps", steps},
      {"params", n_total},
      {"params_flop", n_flop},
      {"flops_per_token", flops_per_token},
      {"tokens_per_s", tokens_per_s},
      {"step_ms", step_ms},
      {"step_ms_mean", mean(ph.step)},
      {"data_ms", median(ph.data)},
      {"forward_ms", median(ph.forward)},
      {"backward_ms", median(ph.backward)},
      {"optimizer_ms", median(ph.optimizer)},
      {"newton_schulz_ms", ns_ms},
      {"other_ms", median(ph.other)},
      {"communication_ms", comm_ms},
      {"telemetry_every", cfg.telemetry.every},
      {"telemetry_ms", telemetry_ms},
      {"telemetry_grams_ms", tel.grams},
      {"telemetry_gradient_spectra_ms", tel.gradients},
      {"telemetry_update_recording_ms", tel.recording},
      {"telemetry_finish_ms", tel.finish},
      {"telemetry_amortised_ms", tel_amortised},
      {"telemetry_frac", step_ms > 0 ? tel_amortised / (step_ms + tel_amortised) : 0.0},
      {"gflops_per_s", gflops},
      {"peak_rss_mib", peak_rss_mib()},
      {"final_loss", last_loss}};
  if (peak > 0) j["mfu"] = gflops / (peak * world);
  if (!lead) return 0;

  if (!json_only) {
    std::printf("bench: %s (%s data) on %s (%s), %d CPU threads, CPU GEMM %s\n", cfg.file.c_str(),
                batches.random() ? "random" : "shard", model->device().c_str(),
                model->describe_memory().c_str(), cpu_threads(),
                gemm_uses_cblas() ? "CBLAS" : "loops");
    if (world > 1)
      std::printf("  %d ranks over %s; figures are rank 0's, tokens/s the job's\n", world,
                  std::string(comm->backend()).c_str());
    std::printf(
        "  batch %lld x %lld x %lld micro-steps%s = %lld tokens/step; %lld warm-up + %lld timed "
        "steps (medians)\n",
        (long long)B, (long long)T, (long long)accum,
        world > 1 ? (" x " + std::to_string(world) + " ranks").c_str() : "",
        (long long)tokens_per_step, (long long)warmup, (long long)steps);
    std::printf("  tokens/s     %10.0f\n", tokens_per_s);
    std::printf("  step         %10.2f ms\n", step_ms);
    std::printf("    data       %10.2f ms\n", median(ph.data));
    std::printf("    forward    %10.2f ms\n", median(ph.forward));
    std::printf("    backward   %10.2f ms\n", median(ph.backward));
    if (on_cpu)
      std::printf("    optimizer  %10.2f ms  (Newton-Schulz, timed apart: %.2f ms)\n",
                  median(ph.optimizer), ns_ms);
    else
      std::printf("    optimizer  %10.2f ms\n", median(ph.optimizer));
    std::printf("    other      %10.2f ms  (gradient %s, zeroing)\n", j["other_ms"].get<double>(),
                world > 1 ? "sum over the ranks and norm" : "norm");
    if (world > 1 && std::isfinite(comm_ms))
      std::printf("  communication %9.2f ms  (collectives, in optimizer and other above)\n",
                  comm_ms);
    else if (world > 1)
      std::printf("  communication      n/a  (NCCL runs on the model's stream: not separable)\n");
    if (cfg.telemetry.every > 0)
      std::printf(
          "  telemetry    %10.2f ms per telemetry step; every %lld: %lld of %lld steps, "
          "%.2f ms/step amortised (%.1f%% of run time)\n",
          telemetry_ms, (long long)cfg.telemetry.every, (long long)tel_steps, (long long)run_steps,
          tel_amortised, 100 * j["telemetry_frac"].get<double>());
    if (cfg.telemetry.every > 0)
      std::printf(
          "    activation Grams %.2f ms, gradient spectra %.2f ms, update recording %.2f ms, "
          "stable ranks and update spectra %.2f ms\n",
          tel.grams, tel.gradients, tel.recording, tel.finish);
    std::printf("  FLOP rate    %10.2f GFLOP/s (%.3g FLOP/token", gflops, flops_per_token);
    if (peak > 0)
      std::printf(", MFU %.1f%% of %d x %.0f GFLOP/s", 100 * gflops / (peak * world), world, peak);
    std::printf(")\n  peak RSS     %10.1f MiB\n", peak_rss_mib());
  }
  if (json_only) {
    std::printf("%s\n", j.dump().c_str());
  } else if (!json_path.empty()) {
    std::ofstream f(json_path);
    if (!f) fail(json_path, "cannot open for writing");
    f << j.dump(2) << "\n";
    if (!f) fail(json_path, "write failed");
  }
  std::fflush(stdout);
  for (const std::string& w : warnings) std::fprintf(stderr, "muongpt: warning: %s\n", w.c_str());
  return 0;
}

}  // namespace muongpt
