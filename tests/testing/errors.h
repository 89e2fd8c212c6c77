// The message of the Error that `f` throws, or "(no error)": tests compare whole error lines.
#pragma once

#include <functional>
#include <string>

#include "core/error.h"

namespace muongpt::testing {

inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace muongpt::testing
