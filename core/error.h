// Errors are exceptions that carry their context: which file (or component), what was expected,
// what was found. The CLI prints them as `muongpt: error: <what()>` (then ` (<hint>)` when there
// is one) and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace muongpt {

class Error : public std::runtime_error {
 public:
  // `where` names the file (or component) the problem is in; `what` says what was wrong; `hint`,
  // when not empty, a likely fix ("did you mean 'n_layer'?"), kept apart so what() stays the fact.
  Error(const std::string& where, const std::string& what, std::string hint = "")
      : std::runtime_error(where.empty() ? what : where + ": " + what),
        where_(where),
        hint_(std::move(hint)) {}
  const std::string& where() const { return where_; }
  const std::string& hint() const { return hint_; }
  // what() without the "where: " in front.
  std::string message() const {
    const std::string all = what();
    return where_.empty() ? all : all.substr(where_.size() + 2);
  }

 private:
  std::string where_, hint_;
};

// A library exception's message without a leading "[json.exception.type_error.302] " style tag,
// so that what reaches the user reads as a sentence.
inline std::string untagged(const std::exception& e) {
  const std::string what = e.what();
  if (what.empty() || what[0] != '[') return what;
  const size_t close = what.find("] ");
  return close == std::string::npos ? what : what.substr(close + 2);
}

// Builds a message from streamable parts: fail("config.toml", "d_model ", d, " is not ...").
template <typename... Parts>
[[noreturn]] void fail(const std::string& where, Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw Error(where, os.str());
}

// Internal invariant violated: a bug in muongpt, not bad input.
#define MG_CHECK(cond, ...)                                                            \
  do {                                                                                 \
    if (!(cond))                                                                       \
      ::muongpt::fail(std::string(__FILE__) + ":" + std::to_string(__LINE__),          \
                      "internal check failed: " #cond " " __VA_OPT__(, ) __VA_ARGS__); \
  } while (0)

}  // namespace muongpt
