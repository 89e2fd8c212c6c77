// `muongpt model-info --config FILE`: the parameter table of the configured model and the
// optimizer routing of its [optim] section (absent: the defaults).
#include <cstdio>
#include <cxxopts.hpp>
#include <iostream>

#include "core/error.h"
#include "core/toml_reader.h"
#include "model/config.h"
#include "model/params.h"
#include "optim/config.h"
#include "optim/routing.h"
#include "tools/commands.h"

namespace muongpt {

int cmd_model_info(int argc, char** argv) {
  cxxopts::Options opts(
      "muongpt model-info",
      "Print the parameter table (name, shape, count, init) of a model config and the "
      "optimizer each parameter is routed to ([optim] section).");
  opts.add_options()("c,config",
                     "config file (TOML with a [model] and optionally an [optim] section)",
                     cxxopts::value<std::string>())("h,help", "show this help");
  auto args = opts.parse(argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("config")) fail("model-info", "--config FILE is required (see --help)");
  const std::string path = args["config"].as<std::string>();
  const toml::table root = parse_toml_file(path);
  const ModelConfig cfg = model_config_from_toml(root, path);
  const auto specs = param_specs(cfg);
  const OptimConfig optim = optim_config_from_toml(root, path);
  std::vector<std::string> warnings;
  const auto routes = resolve_routing(specs, optim, path, &warnings);

  std::printf("model: %s\n", path.c_str());
  std::printf(
      "  n_layer %lld, d_model %lld, heads %lld x %lld, mlp %lld, vocab %lld (padded %lld), "
      "seq_len %lld\n",
      (long long)cfg.n_layer, (long long)cfg.d_model, (long long)cfg.n_head(),
      (long long)cfg.d_head, (long long)cfg.d_mlp(), (long long)cfg.vocab_size,
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
  std::fflush(stdout);
  for (const std::string& w : warnings) std::fprintf(stderr, "muongpt: warning: %s\n", w.c_str());
  return 0;
}

}  // namespace muongpt
