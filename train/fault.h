// Fault injection for the crash-safety tests: with MUONGPT_FAULT=<point>:<step> in the
// environment, the process kills itself with SIGKILL when it reaches that point of that step.
// Points: "step" (right after the optimizer update) and "checkpoint" (halfway through writing
// the checkpoint: model weights written, the rest not). Unset in normal use: costs one getenv
// per call.
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace muongpt {

inline void fault_point(const char* point, int64_t step) {
  const char* spec = std::getenv("MUONGPT_FAULT");
  if (spec && std::string(spec) == std::string(point) + ":" + std::to_string(step))
    std::raise(SIGKILL);
}

}  // namespace muongpt
