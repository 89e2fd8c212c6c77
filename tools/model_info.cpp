// `muongpt model-info --config FILE [--set k=v]...`: the parameter table of the configured model,
// the optimizer routing of its [optim] section (absent: the defaults), and the memory a training
// run of it needs, planned without allocating.
#include <cstdio>
#include <cxxopts.hpp>
#include <iostream>

#include "core/device.h"
#include "core/error.h"
#include "core/memory.h"
#include "model/config.h"
#include "model/model.h"
#include "model/params.h"
#include "optim/config.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "tools/commands.h"
#include "train/config.h"
#include "train/telemetry.h"
#include "train/training.h"

namespace muongpt {

namespace {

// What a run of the config keeps on its device ([device] backend; a GPU plan needs a GPU).
void print_memory(const RunConfig& run, const std::vector<Route>& routes) {
  const int64_t B = run.data.batch_size, T = run.seq();
  std::printf("\nmemory of a training run, batch %lld x %lld tokens:\n", (long long)B,
              (long long)T);
  const bool cuda = resolve_backend(run.device.backend) == "cuda";
  if (cuda && cuda_device_count() == 0) {
    std::printf("  [device] backend = \"cuda\": the GPU plan needs a visible GPU (%s)\n",
                describe_devices().c_str());
    return;
  }
  const MemoryPlan plan = plan_model(run.model, B, T, model_options(run, 0));
  const size_t optim = optimizer_state_bytes(routes, run.telemetry.every > 0, 1);
  const size_t telemetry = RankTelemetry::planned_bytes(run.model, run.telemetry.every);
  std::printf("  %s\n", plan.describe().c_str());
  std::printf("  optimizer state %s, telemetry Grams %s (one rank)\n", format_gib(optim).c_str(),
              format_gib(telemetry).c_str());
  std::printf("  total %s; %s available%s\n", format_gib(plan.total() + optim + telemetry).c_str(),
              format_gib(available_memory(plan.device)).c_str(),
              plan.device == Device::cuda ? " on the GPU" : "");
}

}  // namespace

int cmd_model_info(int argc, char** argv) {
  cxxopts::Options opts(
      "muongpt model-info",
      "Print the parameter table (name, shape, count, init) of a model config and the "
      "optimizer each parameter is routed to ([optim] section).");
  opts.add_options()("c,config",
                     "config file (TOML with a [model] and optionally an [optim] section)",
                     cxxopts::value<std::string>())(
      "s,set", "override a config key: section.key=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())("h,help", "show this help");
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("config")) fail("model-info", "--config FILE is required (see --help)");
  const std::string path = args["config"].as<std::string>();
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  const RunConfig run = load_run_config(path, sets);
  const ModelConfig& cfg = run.model;
  check_batch_shape(cfg, run.data.batch_size, run.seq());  // before anything is sized by it
  const auto specs = param_specs(cfg);
  const OptimConfig& optim = run.optim;
  std::vector<std::string> warnings;
  const auto routes = resolve_routing(specs, optim, path, &warnings);

  std::printf("model: %s\n", path.c_str());
  std::printf(
      "  n_layer %lld, d_model %lld, heads %lld x %lld, mlp %s %lld, vocab %lld (padded %lld), "
      "seq_len %lld\n",
      (long long)cfg.n_layer, (long long)cfg.d_model, (long long)cfg.n_head(),
      (long long)cfg.d_head, cfg.mlp.c_str(), (long long)cfg.mlp_width(), (long long)cfg.vocab_size,
      (long long)cfg.vocab_padded(), (long long)cfg.seq_len);
  std::printf("\n%-28s %-14s %12s  %s\n", "name", "shape", "count", "init");
  for (const ParamSpec& s : specs)
    std::printf("%-28s %-14s %12lld  %s\n", s.name.c_str(), s.shape_str().c_str(),
                (long long)s.numel(), s.init_str().c_str());
  const int64_t total = param_count(specs);
  const int64_t embed = specs.front().numel();
  std::printf("\ntotal %lld parameters (%.2fM; %.2fM without the embedding)\n", (long long)total,
              total / 1e6, (total - embed) / 1e6);

  std::printf("\noptimizer routing: routing = \"%s\", %zu custom rule%s (first match wins)\n",
              optim.routing.c_str(), optim.rules.size(), optim.rules.size() == 1 ? "" : "s");
  std::fputs(routing_table(routes).c_str(), stdout);
  print_memory(run, routes);
  std::fflush(stdout);
  for (const std::string& w : warnings) std::fprintf(stderr, "muongpt: warning: %s\n", w.c_str());
  return 0;
}

}  // namespace muongpt
