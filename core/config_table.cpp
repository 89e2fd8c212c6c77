#include "core/config_table.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace muongpt {

std::string toml_float(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {  // not allowed raw in TOML
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", unsigned(static_cast<unsigned char>(c)));
      out += esc;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void read_value(TomlSection& s, std::string_view key, int64_t& v) {
  v = s.get_int(key, v);
}
void read_value(TomlSection& s, std::string_view key, double& v) {
  v = s.get_float(key, v);
}
void read_value(TomlSection& s, std::string_view key, bool& v) {
  v = s.get_bool(key, v);
}
void read_value(TomlSection& s, std::string_view key, std::string& v) {
  v = s.get_string(key, v);
}
void read_value(TomlSection& s, std::string_view key, std::vector<std::string>& v) {
  const toml::node* n = s.get_node(key);
  if (!n) return;
  const toml::array* arr = n->as_array();
  if (!arr) s.fail_key(key, "expected an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    auto str = (*arr)[i].value_exact<std::string>();
    if (!str) s.fail_key(key, "element " + std::to_string(i) + " is not a string");
    out.push_back(*str);
  }
  v = std::move(out);
}

std::string toml_value(int64_t v) {
  return std::to_string(v);
}
std::string toml_value(double v) {
  return toml_float(v);
}
std::string toml_value(bool v) {
  return v ? "true" : "false";
}
std::string toml_value(const std::string& v) {
  return toml_string(v);
}
std::string toml_value(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + toml_string(v[i]);
  return out + "]";
}

std::string shown_value(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

namespace config_checks {

Check<double> positive() {
  return {[](double v) { return v > 0 && std::isfinite(v); }, "must be positive"};
}
Check<double> non_negative() {
  return {[](double v) { return v >= 0 && std::isfinite(v); }, "must be >= 0"};
}
Check<double> at_least(double low) {
  return {[low](double v) { return v >= low; }, "must be >= " + shown_value(low)};
}
Check<double> at_most(double high) {
  return {[high](double v) { return v <= high; }, "must be <= " + shown_value(high)};
}
Check<double> greater_than(double low) {
  return {[low](double v) { return v > low && std::isfinite(v); }, "must be > " + shown_value(low)};
}
Check<double> in_range(double low, double high) {
  return {[=](double v) { return v >= low && v <= high; },
          "must be in " + shown_value(low) + ".." + shown_value(high)};
}
Check<double> in_unit_interval() {
  return {[](double v) { return v >= 0 && v < 1; }, "must be in [0, 1)"};
}
Check<double> fraction() {
  return {[](double v) { return v >= 0 && v <= 1; }, "must be in [0, 1]"};
}
Check<double> multiple_of(double step) {
  return {[step](double v) { return std::fmod(v, step) == 0; },
          "must be a multiple of " + shown_value(step)};
}
Check<std::string> one_of(std::initializer_list<const char*> choices) {
  std::vector<std::string> names(choices.begin(), choices.end());
  std::string why = "expected ";
  for (size_t i = 0; i < names.size(); ++i)
    why += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + toml_string(names[i]);
  return {[names](const std::string& v) {
            return std::find(names.begin(), names.end(), v) != names.end();
          },
          why, /*lists_choices=*/true};
}

}  // namespace config_checks

namespace config_detail {

void fail_value(const std::string& where, const std::string& section, ValueErrorForm form,
                std::string_view key, const std::string& shown, const CheckFailure& failure) {
  std::string message = "[" + section + "] " + std::string(key);
  if (form == ValueErrorForm::kKeyEqualsValue) {
    message += " = " + shown + ": " + failure.why;
  } else {
    message += ": " + failure.why;
    if (failure.lists_choices) message += ", found " + shown;
  }
  throw Error(where, message);
}

std::string write_lines(const std::string& section,
                        const std::vector<std::pair<std::string, std::string>>& lines_and_docs) {
  // Comments line up after the longest ordinary line; a long one (a list of rules) is left out.
  constexpr size_t kMaxAligned = 40;
  size_t width = 0;
  for (const auto& [line, doc] : lines_and_docs)
    if (line.size() <= kMaxAligned) width = std::max(width, line.size());
  std::string out = "[" + section + "]\n";
  for (const auto& [line, doc] : lines_and_docs) {
    out += line;
    if (!doc.empty())
      out += std::string(std::max(width, line.size()) - line.size() + 2, ' ') + "# " + doc;
    out += "\n";
  }
  return out;
}

}  // namespace config_detail

}  // namespace muongpt
