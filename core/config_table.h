// One declaration per config key. A section lists its keys once, as an X-macro of rows
//   KEY(type, name, default, check, "one-line doc")
// Expanded with MUONGPT_CONFIG_MEMBER inside the section's struct, the rows declare its members
// and their defaults; expanded with MUONGPT_CONFIG_ROW (where `ConfigStruct` names the struct) they
// make the section's ConfigTable, which reads the section (types, unknown keys), runs the per-key
// checks, writes the section of the resolved config.toml (each key's doc as its comment) and tells
// the docs test (tests/train/test_config_docs.cpp) every key and its default. Checks that involve
// more than one key stay in the section's validate(), after the per-key ones.
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/toml_reader.h"

#define MUONGPT_CONFIG_MEMBER(type, name, default_value, check, doc) type name = default_value;
#define MUONGPT_CONFIG_ROW(type, name, default_value, check, doc) \
  ::muongpt::config_key<ConfigStruct, type>(#name, &ConfigStruct::name, check, doc),
// Defines `const ConfigTable<Struct>& accessor()`, the table of KEYS' rows for [section]; the
// optional last argument lists the section's sub-tables.
#define MUONGPT_DEFINE_CONFIG_TABLE(accessor, Struct, section, form, KEYS, ...) \
  const ::muongpt::ConfigTable<Struct>& accessor() {                            \
    using ConfigStruct = Struct;                                                \
    using namespace ::muongpt::config_checks;                                   \
    static const ::muongpt::ConfigTable<Struct> table(                          \
        section, form, {KEYS(MUONGPT_CONFIG_ROW)} __VA_OPT__(, ) __VA_ARGS__);  \
    return table;                                                               \
  }

namespace muongpt {

// ---- Values: how a key's type is read, written as TOML, and shown in an error message. A custom
// value type (e.g. AttnScale in model/config.h) gives the same three functions.

// The shortest form that reads back to the same double, kept a TOML float: 15.0, 1e-06, inf.
std::string toml_float(double v);
// A TOML basic string, with escapes.
std::string toml_string(const std::string& s);

void read_value(TomlSection& s, std::string_view key, int64_t& v);
void read_value(TomlSection& s, std::string_view key, double& v);  // integers are accepted too
void read_value(TomlSection& s, std::string_view key, bool& v);
void read_value(TomlSection& s, std::string_view key, std::string& v);
void read_value(TomlSection& s, std::string_view key, std::vector<std::string>& v);

std::string toml_value(int64_t v);
std::string toml_value(double v);
std::string toml_value(bool v);
std::string toml_value(const std::string& v);
std::string toml_value(const std::vector<std::string>& v);

// Messages show numbers as a stream prints them ("momentum = 1.5", "norm_eps = 1e-06"), the rest
// as TOML ("kind = \"step\"").
std::string shown_value(double v);
template <typename T>
std::string shown_value(const T& v) {
  return toml_value(v);
}

// ---- Checks: what one key's value must satisfy.

struct CheckFailure {
  std::string why;             // "must be positive"
  bool lists_choices = false;  // "expected \"a\" or \"b\"": a message without the value adds it
};

template <typename T>
class Check {
 public:
  using Ok = std::function<bool(const T&)>;
  using Why = std::function<std::string(const T&)>;

  Check() = default;  // any value
  Check(Ok ok, std::string why, bool lists_choices = false)
      : rules_{{std::move(ok), [why = std::move(why)](const T&) { return why; }, lists_choices}} {}
  Check(Ok ok, Why why) : rules_{{std::move(ok), std::move(why), false}} {}
  // A check on numbers applies to integer keys as well (implicitly, for the tables' rows).
  template <typename Number, typename Int = T, typename = std::enable_if_t<std::is_integral_v<Int>>>
  Check(const Check<Number>& c) {
    static_assert(std::is_same_v<Number, double>, "number checks are Check<double>");
    for (const auto& r : c.rules_)
      rules_.push_back({[ok = r.ok](const T& v) { return ok(double(v)); },
                        [why = r.why](const T& v) { return why(double(v)); }, r.lists_choices});
  }

  // Both checks, this one first.
  Check operator&(const Check& other) const {
    Check both = *this;
    both.rules_.insert(both.rules_.end(), other.rules_.begin(), other.rules_.end());
    return both;
  }
  // The same check with its message replaced (`says`) or completed by " (note)" (`note`).
  Check says(const std::string& why) const {
    return reworded([why](const std::string&) { return why; });
  }
  Check note(const std::string& note) const {
    return reworded([note](const std::string& why) { return why + " (" + note + ")"; });
  }

  std::optional<CheckFailure> failure(const T& v) const {
    for (const auto& r : rules_)
      if (!r.ok(v)) return CheckFailure{r.why(v), r.lists_choices};
    return std::nullopt;
  }

 private:
  template <typename>
  friend class Check;
  struct Rule {
    Ok ok;
    Why why;
    bool lists_choices;
  };
  Check reworded(const std::function<std::string(const std::string&)>& f) const {
    Check c = *this;
    for (auto& r : c.rules_) r.why = [f, why = r.why](const T& v) { return f(why(v)); };
    return c;
  }
  std::vector<Rule> rules_;
};

// The common checks, for the tables' check column (`using namespace config_checks;`).
namespace config_checks {
Check<double> positive();                         // > 0 and finite
Check<double> non_negative();                     // >= 0 and finite
Check<double> at_least(double low);               // >= low (infinity passes)
Check<double> at_most(double high);               // <= high
Check<double> greater_than(double low);           // > low and finite
Check<double> in_range(double low, double high);  // low..high, both included
Check<double> in_unit_interval();                 // [0, 1)
Check<double> fraction();                         // [0, 1]
Check<double> multiple_of(double step);           // an integer multiple of step
Check<std::string> one_of(std::initializer_list<const char*> choices);
}  // namespace config_checks

// ---- Tables

// How a section's value errors read; both forms are older than the tables and pinned by tests.
enum class ValueErrorForm {
  kKeyEqualsValue,  // "[model] n_layer = -2: must be positive"
  kKeyOnly,         // "[train] steps: must be positive"; for choices ", found \"x\"" follows
};

// One key of the section struct S, its type erased.
template <typename S>
struct ConfigKey {
  std::string name, doc;
  std::function<void(TomlSection&, S&)> read;
  std::function<std::string(const S&)> toml;   // the value as TOML
  std::function<std::string(const S&)> shown;  // the value in a message
  std::function<std::optional<CheckFailure>(const S&)> check;
};

template <typename S, typename T>
ConfigKey<S> config_key(const char* name, T S::*member, std::type_identity_t<Check<T>> check,
                        const char* doc) {
  return {name,
          doc,
          [=](TomlSection& s, S& c) { read_value(s, name, c.*member); },
          [=](const S& c) { return toml_value(c.*member); },
          [=](const S& c) { return shown_value(c.*member); },
          [=](const S& c) { return check.failure(c.*member); }};
}

// A key as the docs see it: its name, its default as config.toml writes it, its one-line doc.
struct ConfigKeyInfo {
  std::string name, default_toml, doc;
};

namespace config_detail {
[[noreturn]] void fail_value(const std::string& where, const std::string& section,
                             ValueErrorForm form, std::string_view key, const std::string& shown,
                             const CheckFailure& failure);
// "[section]\n" then "key = value  # doc" per line, the comments aligned (none for an empty doc).
std::string write_lines(const std::string& section,
                        const std::vector<std::pair<std::string, std::string>>& lines_and_docs);
}  // namespace config_detail

template <typename S>
class ConfigTable {
 public:
  // `subsections` are tables nested in this one that other tables read ([optim] holds [optim.adamw]
  // and [optim.muon]); they are not unknown keys here.
  ConfigTable(std::string section, ValueErrorForm form, std::vector<ConfigKey<S>> keys,
              std::vector<std::string> subsections = {})
      : section_(std::move(section)),
        form_(form),
        keys_(std::move(keys)),
        subsections_(std::move(subsections)) {}

  const std::string& section() const { return section_; }
  const std::vector<ConfigKey<S>>& keys() const { return keys_; }

  // Reads the keys present in [section] of `root` into `out`; absent ones keep their value. Wrong
  // types and unknown keys are errors naming the file, the section and the key.
  void read(const toml::table& root, const std::string& file, S& out) const {
    TomlSection s = TomlSection::of(root, file, section_);
    read(s, out);
  }
  void read(TomlSection& s, S& out) const {
    for (const ConfigKey<S>& k : keys_) k.read(s, out);
    for (const std::string& sub : subsections_) s.get_node(sub);
    s.finish();
  }

  // The per-key checks in table order; the first failure is Error(where, "[section] key ...").
  void check(const S& c, const std::string& where) const {
    for (const ConfigKey<S>& k : keys_)
      if (auto f = k.check(c))
        config_detail::fail_value(where, section_, form_, k.name, k.shown(c), *f);
  }
  // A failed check across keys (validate()), in the section's form of message about `key`.
  [[noreturn]] void fail(const std::string& where, const S& c, std::string_view key,
                         const std::string& why) const {
    config_detail::fail_value(where, section_, form_, key, find(key).shown(c), {why});
  }

  // "key = value" of every key, in table order (what comparisons of two configs line up).
  std::vector<std::string> assignments(const S& c) const {
    std::vector<std::string> out;
    for (const ConfigKey<S>& k : keys_) out.push_back(k.name + " = " + k.toml(c));
    return out;
  }
  // The section with every key spelled out; with `docs`, each line ends with its key's doc as a
  // comment (the resolved config.toml), else it is exactly "key = value".
  std::string write(const S& c, bool docs) const {
    std::vector<std::pair<std::string, std::string>> lines;
    for (const ConfigKey<S>& k : keys_)
      lines.emplace_back(k.name + " = " + k.toml(c), docs ? k.doc : "");
    return config_detail::write_lines(section_, lines);
  }
  // Every key with the default value of S.
  std::vector<ConfigKeyInfo> key_info() const {
    const S defaults{};
    std::vector<ConfigKeyInfo> out;
    for (const ConfigKey<S>& k : keys_) out.push_back({k.name, k.toml(defaults), k.doc});
    return out;
  }

 private:
  const ConfigKey<S>& find(std::string_view key) const {
    for (const ConfigKey<S>& k : keys_)
      if (k.name == key) return k;
    throw Error(section_, "no key '" + std::string(key) + "' in the table");  // a bug, not input
  }

  std::string section_;
  ValueErrorForm form_;
  std::vector<ConfigKey<S>> keys_;
  std::vector<std::string> subsections_;
};

}  // namespace muongpt
