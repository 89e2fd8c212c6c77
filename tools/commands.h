// The `muongpt` subcommands. Each parses its own flags (argv[0] is the subcommand name), prints
// its own --help, returns the exit code, and throws Error for bad input.
#pragma once

#include <cxxopts.hpp>

namespace muongpt {

// opts.parse(argc, argv), with any argument no option takes (a positional argument the command
// has no place for, e.g. `train.steps=2` without --set) an Error naming it instead of ignored.
cxxopts::ParseResult parse_command_line(cxxopts::Options& opts, int argc, char** argv);

int cmd_model_info(int argc, char** argv);
int cmd_shard_info(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_ranks(int argc, char** argv);
int cmd_sample(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_sweep(int argc, char** argv);
int cmd_compare(int argc, char** argv);

}  // namespace muongpt
