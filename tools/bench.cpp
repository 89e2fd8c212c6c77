// `muongpt bench --config FILE [--set k=v]... [--steps N] [--warmup W] [--json FILE]`: the
// steady-state speed of the training step (Training::step, the trainer's own, with its checks and
// clipping) on the config, split into its phases (data, forward, backward, optimizer, the rest),
// communication and telemetry; plus a FLOP rate (formula in docs/bench.md) and the peak RSS. One
// JSON object with the same figures goes to --json FILE ("-" for stdout). Under a launcher
// (mpirun, torchrun) every rank takes part and rank 0 reports.
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
#include "model/params.h"
#include "optim/dualizer.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/job.h"
#include "train/training.h"

namespace muongpt {
namespace {

using Clock = std::chrono::steady_clock;

double since_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

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

struct BenchOptions {
  RunConfig cfg;
  int64_t steps = 10, warmup = 2;
  bool random_data = false;
  bool profile = false;    // one more step, timed op by op
  double peak_gflops = 0;  // 0: [device] peak_tflops, else the GPU's from a table
  std::string json_path;   // "" = none, "-" = stdout only JSON
  RankFlags ranks;
};

// The command line, or nullopt after --help.
std::optional<BenchOptions> parse_options(int argc, char** argv) {
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
      "profile",
      "also time one more step op by op (every kind of op of the model, forward and backward "
      "apart, the optimizer's parts, data, telemetry) with each one's share of the step")(
      "peak-gflops",
      "one rank's peak GFLOP/s (its GPU or its CPU cores), for the MFU (0: [device] "
      "peak_tflops, else the GPU's from a table; none on a CPU)",
      cxxopts::value<double>()->default_value("0"))(
      "json", "also write the figures as one JSON object to FILE ('-' = stdout only JSON)",
      cxxopts::value<std::string>())("h,help", "show this help");
  add_rank_options(opts);
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return std::nullopt;
  }
  if (!args.count("config")) fail("bench", "--config FILE is required (see --help)");
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  BenchOptions o;
  o.cfg = load_run_config(args["config"].as<std::string>(), sets);
  o.steps = args["steps"].as<int64_t>();
  o.warmup = args["warmup"].as<int64_t>();
  if (o.steps < 1) fail("bench", "--steps must be at least 1, got ", o.steps);
  if (o.warmup < 0) fail("bench", "--warmup must be at least 0, got ", o.warmup);
  o.random_data = args.count("random-data") > 0;
  o.profile = args.count("profile") > 0;
  o.peak_gflops = args["peak-gflops"].as<double>();
  if (!(o.peak_gflops >= 0) || !std::isfinite(o.peak_gflops))
    fail("bench",
         "--peak-gflops must be a finite number >= 0 (0 = [device] peak_tflops or the "
         "GPU's), got ",
         o.peak_gflops);
  if (args.count("json")) o.json_path = args["json"].as<std::string>();
  o.ranks = rank_flags(args);
  return o;
}

// What the timed steps showed: per step, each phase's milliseconds and the whole step's.
struct Measurement {
  std::vector<double> data, forward, backward, reduce, optimizer, communication, other, step;
  std::vector<double> losses;  // every step run, warm-up and telemetry steps included, in order
  // One telemetry step's parts (the second of two: first-use costs stay out).
  double grams = 0, gradient_spectra = 0, update_recording = 0, finish = 0;
  // --profile: one more step, op by op (its rows add up to profile_step_ms).
  std::vector<StepProfiler::Row> profile;
  double profile_step_ms = 0;
  double telemetry() const { return grams + gradient_spectra + update_recording + finish; }
};

Measurement measure(Training& run, const BenchOptions& o, const Comm& comm) {
  Measurement m;
  PhaseTimer timer(run.model());
  for (int64_t i = 0; i < o.warmup; ++i) m.losses.push_back(run.step().loss);
  for (int64_t i = 0; i < o.steps; ++i) {
    timer.reset();
    const double comm_s = comm.collective_seconds();
    const auto t0 = Clock::now();
    m.losses.push_back(run.step(&timer).loss);
    m.step.push_back(since_ms(t0));
    m.communication.push_back((comm.collective_seconds() - comm_s) * 1e3);
    for (auto [v, p] : {std::pair{&m.data, Phase::data},
                        {&m.forward, Phase::forward},
                        {&m.backward, Phase::backward},
                        {&m.reduce, Phase::reduce},
                        {&m.optimizer, Phase::optimizer}})
      v->push_back(timer.ms(p));
    m.other.push_back(std::max(0.0, m.step.back() - m.data.back() - m.forward.back() -
                                        m.backward.back() - m.optimizer.back()));
  }
  if (o.profile) {
    StepProfiler profiler(run);
    const auto t0 = Clock::now();
    m.losses.push_back(run.step(&profiler).loss);
    m.profile_step_ms = since_ms(t0);
    m.profile = profiler.rows(m.profile_step_ms);
  }
  if (o.cfg.telemetry.every <= 0) return m;
  for (int rep = 0; rep < 2; ++rep) {  // telemetry calls in order: Grams per micro-batch,
    timer.reset();                     // gradient spectra, then the update spectra (finish)
    m.losses.push_back(run.step(&timer, /*telemetry=*/true).loss);
    std::vector<double> tel;
    for (const auto& [p, ms] : timer.calls())
      if (p == Phase::telemetry) tel.push_back(ms);
    m.finish = tel.back();
    m.gradient_spectra = tel[tel.size() - 2];
    m.grams = 0;
    for (size_t i = 0; i + 2 < tel.size(); ++i) m.grams += tel[i];
    m.update_recording = std::max(0.0, timer.ms(Phase::optimizer) - median(m.optimizer));
  }
  return m;
}

nlohmann::json figures(const Training& run, const BenchOptions& o, const Measurement& m,
                       const Comm& comm) {
  const RunConfig& cfg = o.cfg;
  const Model& model = run.model();
  const int world = comm.world();
  const double step_ms = median(m.step);
  const double tokens_per_s = double(run.tokens_per_step()) / (step_ms / 1e3);
  const double gflops = run.flops_per_token() * tokens_per_s / 1e9;
  const double peak = o.peak_gflops > 0 ? o.peak_gflops : 1e3 * run.peak_tflops();
  const int64_t tel_steps = telemetry_steps(cfg.telemetry.every, cfg.train.steps);
  const double tel_amortised = m.telemetry() * double(tel_steps) / double(cfg.train.steps);
  // Newton–Schulz timed apart with the CPU dualizers: meaningless for a GPU run (NaN → null).
  const double ns_ms =
      model.device() == Device::cpu ? dualize_ms(run.routes(), cfg.optim, comm, 3) : NAN;
  // A device-memory communicator only queues its collectives on the model's stream, so their
  // time is not separable from the compute around them (NaN → null).
  const double comm_ms = comm.buffers() == Device::cpu ? median(m.communication) : NAN;
  nlohmann::json j = {
      {"tool", "muongpt"},
      {"config", cfg.file},
      {"device", model.describe()},
      {"model_mib", double(model.memory_plan().total()) / 1048576.0},
      {"memory", model.memory_plan().describe()},
      {"data", run.random_data() ? "random" : "shards"},
      {"threads", cpu_threads()},
      {"world", world},
      {"comm", std::string(comm.backend())},
      {"gemm", gemm_uses_cblas() ? "cblas" : "loops"},
      {"batch", cfg.data.batch_size},
      {"seq", cfg.seq()},
      {"grad_accum", cfg.data.grad_accum},
      {"tokens_per_step", run.tokens_per_step()},
      {"warmup", o.warmup},
      {"steps", o.steps},
      {"params", param_count(model.specs())},
      {"params_flop", matmul_param_count(cfg.model, model.specs())},
      {"flops_per_token", run.flops_per_token()},
      {"tokens_per_s", tokens_per_s},
      {"step_ms", step_ms},
      {"step_ms_mean", mean(m.step)},
      {"data_ms", median(m.data)},
      {"forward_ms", median(m.forward)},
      {"backward_ms", median(m.backward)},
      {"reduce_ms", median(m.reduce)},
      {"optimizer_ms", median(m.optimizer)},
      {"newton_schulz_ms", ns_ms},
      {"other_ms", median(m.other)},
      {"communication_ms", comm_ms},
      {"telemetry_every", cfg.telemetry.every},
      {"telemetry_ms", m.telemetry()},
      {"telemetry_grams_ms", m.grams},
      {"telemetry_gradient_spectra_ms", m.gradient_spectra},
      {"telemetry_update_recording_ms", m.update_recording},
      {"telemetry_finish_ms", m.finish},
      {"telemetry_amortised_ms", tel_amortised},
      {"telemetry_frac", step_ms > 0 ? tel_amortised / (step_ms + tel_amortised) : 0.0},
      {"gflops_per_s", gflops},
      {"peak_rss_mib", peak_rss_mib()},
      {"final_loss", m.losses.back()},
      {"losses", m.losses}};
  if (peak > 0) {
    j["peak_gflops"] = peak;
    j["mfu"] = gflops / (peak * world);
  }
  if (o.profile) {
    nlohmann::json rows = nlohmann::json::array();
    for (const StepProfiler::Row& r : m.profile)
      rows.push_back(
          {{"op", r.op}, {"pass", r.pass}, {"ms", r.ms}, {"share", r.ms / m.profile_step_ms}});
    j["profile"] = {{"step_ms", m.profile_step_ms}, {"rows", rows}};
  }
  return j;
}

void report(const nlohmann::json& j, const BenchOptions& o) {
  auto ms = [&](const char* key) { return j[key].is_number() ? j[key].get<double>() : NAN; };
  const int world = j["world"].get<int>();
  const RunConfig& cfg = o.cfg;
  std::printf("bench: %s (%s data) on %s (%s), %d CPU threads, CPU GEMM %s\n", cfg.file.c_str(),
              j["data"].get<std::string>() == "random" ? "random" : "shard",
              j["device"].get<std::string>().c_str(), j["memory"].get<std::string>().c_str(),
              j["threads"].get<int>(), gemm_uses_cblas() ? "CBLAS" : "loops");
  if (world > 1)
    std::printf("  %d ranks over %s; figures are rank 0's, tokens/s the job's\n", world,
                j["comm"].get<std::string>().c_str());
  std::printf(
      "  batch %lld x %lld x %lld micro-steps%s = %lld tokens/step; %lld warm-up + %lld timed "
      "steps (medians)\n",
      (long long)cfg.data.batch_size, (long long)cfg.seq(), (long long)cfg.data.grad_accum,
      world > 1 ? (" x " + std::to_string(world) + " ranks").c_str() : "",
      j["tokens_per_step"].get<long long>(), (long long)o.warmup, (long long)o.steps);
  std::printf("  tokens/s     %10.0f\n", ms("tokens_per_s"));
  std::printf("  step         %10.2f ms\n", ms("step_ms"));
  std::printf("    data       %10.2f ms\n", ms("data_ms"));
  std::printf("    forward    %10.2f ms\n", ms("forward_ms"));
  std::printf("    backward   %10.2f ms\n", ms("backward_ms"));
  if (std::isfinite(ms("newton_schulz_ms")))
    std::printf("    optimizer  %10.2f ms  (Newton-Schulz, timed apart: %.2f ms)\n",
                ms("optimizer_ms"), ms("newton_schulz_ms"));
  else
    std::printf("    optimizer  %10.2f ms\n", ms("optimizer_ms"));
  std::printf("    other      %10.2f ms  (gradient %s %.2f ms, checks, zeroing)\n", ms("other_ms"),
              world > 1 ? "sum over the ranks, norm and clipping" : "norm and clipping",
              ms("reduce_ms"));
  if (world > 1 && std::isfinite(ms("communication_ms")))
    std::printf("  communication %9.2f ms  (collectives, in optimizer and other above)\n",
                ms("communication_ms"));
  else if (world > 1)
    std::printf(
        "  communication      n/a  (%s: collectives in the model's stream order, not timed "
        "apart)\n",
        j["comm"].get<std::string>().c_str());
  if (cfg.telemetry.every > 0) {
    std::printf(
        "  telemetry    %10.2f ms per telemetry step; every %lld: %lld of %lld steps, "
        "%.2f ms/step amortised (%.1f%% of run time)\n",
        ms("telemetry_ms"), (long long)cfg.telemetry.every,
        (long long)telemetry_steps(cfg.telemetry.every, cfg.train.steps),
        (long long)cfg.train.steps, ms("telemetry_amortised_ms"), 100 * ms("telemetry_frac"));
    std::printf(
        "    activation Grams %.2f ms, gradient spectra %.2f ms, update recording %.2f ms, "
        "stable ranks and update spectra %.2f ms\n",
        ms("telemetry_grams_ms"), ms("telemetry_gradient_spectra_ms"),
        ms("telemetry_update_recording_ms"), ms("telemetry_finish_ms"));
  }
  std::printf("  FLOP rate    %10.2f GFLOP/s (%.3g FLOP/token", ms("gflops_per_s"),
              ms("flops_per_token"));
  if (j.contains("mfu"))
    std::printf(", MFU %.1f%% of %d x %.0f GFLOP/s", 100 * ms("mfu"), world, ms("peak_gflops"));
  std::printf(")\n  peak RSS     %10.1f MiB\n", ms("peak_rss_mib"));
  if (!j.contains("profile")) return;
  const nlohmann::json& p = j["profile"];
  std::printf(
      "\nprofile of one step (%.2f ms), every op kind summed over the layers and "
      "micro-batches:\n  %-16s %-10s %10s %7s\n",
      p["step_ms"].get<double>(), "op", "pass", "ms", "share");
  for (const nlohmann::json& r : p["rows"])
    std::printf("  %-16s %-10s %10.3f %6.1f%%\n", r["op"].get<std::string>().c_str(),
                r["pass"].get<std::string>().c_str(), r["ms"].get<double>(),
                100 * r["share"].get<double>());
}

void write_json(const nlohmann::json& j, const std::string& path) {
  if (path == "-") {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::ofstream f(path);
  if (!f) fail(path, "cannot open for writing");
  f << j.dump(2) << "\n";
  if (!f) fail(path, "write failed");
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  const std::optional<BenchOptions> o = parse_options(argc, argv);
  if (!o) return 0;
  const RankInfo info = discover_ranks(o->ranks);
  share_cpu_threads(info.local_world);
  const std::unique_ptr<Comm> comm =
      make_job_comm(info, o->cfg, resolve_backend(o->cfg.device.backend));
  Training run(o->cfg, *comm,
               {.local_rank = info.local_rank, .resume = "", .random_data = o->random_data});
  const Measurement m = measure(run, *o, *comm);
  const nlohmann::json j = figures(run, *o, m, *comm);
  if (comm->rank() != 0) return 0;  // rank 0 reports
  if (o->json_path != "-") report(j, *o);
  if (!o->json_path.empty()) write_json(j, o->json_path);
  std::fflush(stdout);
  for (const std::string& w : run.warnings())
    std::fprintf(stderr, "muongpt: warning: %s\n", w.c_str());
  return 0;
}

}  // namespace muongpt
