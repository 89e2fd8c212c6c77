// The `muongpt` subcommands. Each parses its own flags (argv[0] is the subcommand name), prints
// its own --help, returns the exit code, and throws Error for bad input.
#pragma once

namespace muongpt {

int cmd_model_info(int argc, char** argv);
int cmd_shard_info(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_ranks(int argc, char** argv);
int cmd_sample(int argc, char** argv);
int cmd_bench(int argc, char** argv);

}  // namespace muongpt
