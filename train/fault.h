// Fault injection for the crash-safety tests: with MUONGPT_FAULT=<point>:<step>[@<rank>] in the
// environment, the process kills itself with SIGKILL when it reaches that point of that step
// (only on that rank of a multi-rank run when @<rank> is given). Points: "step" (right after the
// optimizer update), "checkpoint" (halfway through writing the checkpoint: model weights
// written, the rest not) and "hang" (right after the update, but SIGSTOP instead: a rank that
// stops answering). Unset in normal use: costs one getenv per call.
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace muongpt {

// This process's rank, for @<rank> (the trainer sets it).
inline int& fault_rank() {
  static int rank = 0;
  return rank;
}

inline void fault_point(const char* point, int64_t step) {
  const char* spec = std::getenv("MUONGPT_FAULT");
  if (!spec) return;
  std::string s = spec;
  if (size_t at = s.find('@'); at != std::string::npos) {
    if (s.substr(at + 1) != std::to_string(fault_rank())) return;
    s.resize(at);
  }
  std::string when(":");
  when += std::to_string(step);
  if (s == std::string(point) + when) std::raise(SIGKILL);
  if (std::string(point) == "step" && s == "hang" + when) std::raise(SIGSTOP);
}

}  // namespace muongpt
