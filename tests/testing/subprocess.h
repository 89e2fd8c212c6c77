// Runs the muongpt binary as a user would (through the shell) and captures what it printed.
#pragma once

#include <sys/wait.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace muongpt::testing {

struct CommandResult {
  int status = -1;  // the exit code, or 128 + the signal that killed it
  std::string out;  // stdout and stderr together
};

// The binary under test: $MUONGPT_BIN when set (a test binary carried to another machine, as
// tools/gpu_session.sh does), else the one built beside the tests.
inline std::string muongpt_binary() {
  const char* env = std::getenv("MUONGPT_BIN");
  return env && *env ? env : MUONGPT_BIN;
}

// `env` is prepended to the command line ("VAR=value ...").
inline CommandResult run_muongpt(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + " " + muongpt_binary() + " " + args + " 2>&1";
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  return r;
}

}  // namespace muongpt::testing
