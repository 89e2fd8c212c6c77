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

#include <unistd.h>

namespace muongpt::testing {

// The binary run in the background, as a user runs a job in another terminal; its output goes
// to `log`. The process is the binary itself (the shell execs it), so signals reach it directly.
class Background {
 public:
  Background(const std::string& args, const std::string& log, const std::string& env = "") {
    const std::string cmd = env + " exec " + muongpt_binary() + " " + args + " >" + log + " 2>&1";
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !done_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  pid_t pid() const { return pid_; }
  // Waits until it stops (SIGSTOP, e.g. MUONGPT_FAULT=hang:N) or ends; true when it stopped.
  bool wait_stopped() {
    int st = 0;
    if (waitpid(pid_, &st, WUNTRACED) != pid_) return false;
    done_ = !WIFSTOPPED(st);
    return WIFSTOPPED(st);
  }
  // Sends `sig` (SIGCONT lets a stopped process go on) and waits for the process to end; returns
  // the status as CommandResult::status does.
  int signal_and_wait(int sig) {
    kill(pid_, sig);
    int st = 0;
    while (waitpid(pid_, &st, 0) == pid_ && WIFSTOPPED(st)) {
    }
    done_ = true;
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
};

}  // namespace muongpt::testing
