// Typed, checked reading of one TOML section. Every error names the file, the section and the
// key; keys nobody asked for are reported by finish(), so a typo never passes silently.
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace muongpt {

// A config is text a person wrote: anything larger is a mistake (a shard given as a config).
inline constexpr int64_t kMaxConfigBytes = 16 << 20;

// Parses a whole TOML file; a syntax error becomes Error(path, "line L, column C: ..."); a path
// that is not a regular file (a directory, a FIFO) or is larger than kMaxConfigBytes is an Error.
toml::table parse_toml_file(const std::string& path);
toml::table parse_toml_string(std::string_view text, const std::string& source_name);

class TomlSection {
 public:
  // `table` may be null (section absent: every key takes its default).
  TomlSection(const toml::table* table, std::string file, std::string section);
  // Looks up `section` (dotted, e.g. "optim.muon") in `root`.
  static TomlSection of(const toml::table& root, const std::string& file,
                        const std::string& section);

  int64_t get_int(std::string_view key, int64_t fallback);
  double get_float(std::string_view key, double fallback);  // integers are accepted too
  bool get_bool(std::string_view key, bool fallback);
  std::string get_string(std::string_view key, const std::string& fallback);
  // The raw node (or null), for keys that accept more than one type; marks the key as read.
  const toml::node* get_node(std::string_view key);

  // Fails on the first key in the section that no getter asked for; the Error's hint names the
  // closest key that was asked for ("did you mean 'n_layer'?").
  void finish() const;
  // "<file>: [section] key: <message>"
  [[noreturn]] void fail_key(std::string_view key, const std::string& message) const;

 private:
  const toml::table* table_;
  std::string file_, section_;
  std::vector<std::string> asked_;  // in the order asked: ties in the suggestion go to the first
};

// The name in `known` closest to `name` by edit distance (a swap of neighbours counts as one
// edit), or one that starts the other: the likely intent of a typo. "" when none is close.
std::string closest_name(std::string_view name, const std::vector<std::string>& known);

}  // namespace muongpt
