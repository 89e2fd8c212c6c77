// The `muongpt` binary: dispatches to a subcommand and turns errors into one line on stderr.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <cxxopts.hpp>
#include <exception>
#include <new>
#include <string_view>

#include "core/comm.h"
#include "core/device.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/version.h"
#include "tools/commands.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

constexpr Command kCommands[] = {
    {"train", "train a model from a config (checkpoints, metrics, rank telemetry)",
     muongpt::cmd_train},
    {"ranks", "per-block rank telemetry of a run (st(A), nr(G), their ratio)", muongpt::cmd_ranks},
    {"sample", "generate text from a checkpoint", muongpt::cmd_sample},
    {"model-info", "print the parameter table of a model config", muongpt::cmd_model_info},
    {"tokenize", "turn .txt/.jsonl text into GPT-2 token shards", muongpt::cmd_tokenize},
    {"shard-info", "check token shards and print their statistics", muongpt::cmd_shard_info},
    {"bench", "time training steps of a config: tokens/s, step split, FLOP rate",
     muongpt::cmd_bench},
    {"sweep", "run the variants of a config (listed, or the product of axes) as runs",
     muongpt::cmd_sweep},
    {"compare", "line runs up: config diff, val losses at matched tokens, telemetry",
     muongpt::cmd_compare},
};

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "muongpt %s: train NanoGPT-style transformers with Muon, with rank telemetry\n\n"
               "usage: muongpt <command> [options]    (muongpt <command> --help for its options)\n"
               "       muongpt --version | --help\n\ncommands:\n",
               muongpt::kVersion);
  for (const Command& c : kCommands) std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
}

void print_version() {
  std::printf("muongpt %s (commit %s)\n", muongpt::kVersion, muongpt::kGitCommit);
  std::printf("  CPU GEMM: %s\n", muongpt::gemm_uses_cblas() ? "CBLAS (OpenBLAS)" : "plain loops");
  std::printf("  CUDA: %s\n", muongpt::built_with_cuda() ? "built" : "not built");
  if (muongpt::built_with_cuda())
    std::printf("  devices: %s\n", muongpt::describe_devices().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  // Past a file-size limit (ulimit -f) a write fails with EFBIG and the run says so, instead of
  // the process dying by SIGXFSZ with a half-written checkpoint (docs/reliability.md).
  std::signal(SIGXFSZ, SIG_IGN);
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string_view cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "-V" || cmd == "version") {
    print_version();
    return 0;
  }
  for (const Command& c : kCommands) {
    if (cmd != c.name) continue;
    try {
      return c.run(argc - 1, argv + 1);
    } catch (const cxxopts::exceptions::exception& e) {
      std::fprintf(stderr, "muongpt: error: %s: %s\n", c.name, e.what());
    } catch (const muongpt::Error& e) {
      if (e.hint().empty())
        std::fprintf(stderr, "muongpt: error: %s\n", e.what());
      else
        std::fprintf(stderr, "muongpt: error: %s (%s)\n", e.what(), e.hint().c_str());
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "muongpt: error: %s: out of memory\n", c.name);
    } catch (const std::exception& e) {  // a library's own error: its message, without its tag
      std::fprintf(stderr, "muongpt: error: %s: %s\n", c.name, muongpt::untagged(e).c_str());
    }
    std::fflush(stderr);
    muongpt::abort_job(1);  // in a multi-rank job, take the other ranks down with this one
    return 1;
  }
  std::fprintf(stderr, "muongpt: error: unknown command '%s' (see muongpt --help)\n", argv[1]);
  return 2;
}
