// The repository root the tests read fixtures from: $MUONGPT_SOURCE_DIR when set (test binaries
// carried to another machine, tools/gpu_bundle.sh), else the checkout they were built from.
#pragma once

#include <cstdlib>
#include <string>

namespace muongpt::testing {

inline std::string source_dir() {
  const char* env = std::getenv("MUONGPT_SOURCE_DIR");
  return env && *env ? env : MUONGPT_SOURCE_DIR;
}

}  // namespace muongpt::testing
