// `muongpt train --config FILE [--set section.key=value]... [--resume latest|DIR]`
#include <cmath>
#include <cxxopts.hpp>
#include <iostream>

#include "core/error.h"
#include "tools/commands.h"
#include "train/job.h"
#include "train/trainer.h"

namespace muongpt {

int cmd_train(int argc, char** argv) {
  cxxopts::Options opts("muongpt train",
                        "Train a GPT from a TOML config (docs/config.md lists every key).");
  opts.add_options()("c,config", "config file", cxxopts::value<std::string>())(
      "s,set", "override a config key: section.key=value (repeatable)",
      cxxopts::value<std::vector<std::string>>())(
      "r,resume", "continue from a checkpoint: 'latest' (the run's newest) or a directory",
      cxxopts::value<std::string>())("h,help", "show this help");
  add_rank_options(opts);
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << "The run writes <run.dir>/<run.name>/: config.toml, routing.tsv,"
              << " metrics.jsonl,\nranks.jsonl, log.txt and checkpoints/step_NNNNNN/.\n"
              << "Several processes: mpirun -np N muongpt train ... (docs/distributed.md).\n";
    return 0;
  }
  if (!args.count("config")) fail("train", "--config FILE is required (see --help)");
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  const RunConfig cfg = load_run_config(args["config"].as<std::string>(), sets);
  TrainOptions options;
  if (args.count("resume")) options.resume = args["resume"].as<std::string>();
  options.ranks = rank_flags(args);
  const TrainSummary s = train(cfg, options);
  return s.interrupted ? 130 : 0;
}

}  // namespace muongpt
