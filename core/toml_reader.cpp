#include "core/toml_reader.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "core/error.h"
#include "core/files.h"

namespace muongpt {

namespace {
std::string node_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

[[noreturn]] void rethrow_parse_error(const toml::parse_error& e, const std::string& source) {
  const auto& where = e.source().begin;
  fail(source, "TOML syntax error at line ", where.line, ", column ", where.column, ": ",
       e.description());
}
}  // namespace

toml::table parse_toml_file(const std::string& path) {
  // Read by us, not the parser: a directory, a FIFO or a huge file is one clear error.
  std::string text;
  try {
    text = read_regular_file(path, kMaxConfigBytes);
  } catch (const Error& e) {
    fail(path, "cannot read file: ", e.message());
  }
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    rethrow_parse_error(e, path);
  }
}

toml::table parse_toml_string(std::string_view text, const std::string& source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    rethrow_parse_error(e, source_name);
  }
}

TomlSection::TomlSection(const toml::table* table, std::string file, std::string section)
    : table_(table), file_(std::move(file)), section_(std::move(section)) {}

TomlSection TomlSection::of(const toml::table& root, const std::string& file,
                            const std::string& section) {
  const toml::node* node = root.at_path(section).node();
  if (node && !node->is_table()) fail(file, "[", section, "] must be a table");
  return TomlSection(node ? node->as_table() : nullptr, file, section);
}

void TomlSection::fail_key(std::string_view key, const std::string& message) const {
  fail(file_, "[", section_, "] ", key, ": ", message);
}

const toml::node* TomlSection::get_node(std::string_view key) {
  if (std::find(asked_.begin(), asked_.end(), key) == asked_.end()) asked_.emplace_back(key);
  return table_ ? table_->get(key) : nullptr;
}

int64_t TomlSection::get_int(std::string_view key, int64_t fallback) {
  const toml::node* n = get_node(key);
  if (!n) return fallback;
  if (auto v = n->value_exact<int64_t>()) return *v;
  fail_key(key, "expected an integer, found " + node_type_name(*n));
}

double TomlSection::get_float(std::string_view key, double fallback) {
  const toml::node* n = get_node(key);
  if (!n) return fallback;
  if (auto v = n->value_exact<double>()) return *v;
  if (auto v = n->value_exact<int64_t>()) return static_cast<double>(*v);
  fail_key(key, "expected a number, found " + node_type_name(*n));
}

bool TomlSection::get_bool(std::string_view key, bool fallback) {
  const toml::node* n = get_node(key);
  if (!n) return fallback;
  if (auto v = n->value_exact<bool>()) return *v;
  fail_key(key, "expected true or false, found " + node_type_name(*n));
}

std::string TomlSection::get_string(std::string_view key, const std::string& fallback) {
  const toml::node* n = get_node(key);
  if (!n) return fallback;
  if (auto v = n->value_exact<std::string>()) return *v;
  fail_key(key, "expected a string, found " + node_type_name(*n));
}

void TomlSection::finish() const {
  if (!table_) return;
  for (const auto& [key, node] : *table_) {
    if (std::find(asked_.begin(), asked_.end(), key.str()) != asked_.end()) continue;
    const std::string near = closest_name(key.str(), asked_);
    throw Error(file_, "[" + section_ + "] unknown key '" + std::string(key.str()) + "'",
                near.empty() ? "" : "did you mean '" + near + "'?");
  }
}

std::string closest_name(std::string_view name, const std::vector<std::string>& known) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  // Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps.
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i)
      for (size_t j = 1; j <= b.size(); ++j) {
        d[i][j] = std::min(
            {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
          d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    return d[a.size()][b.size()];
  };
  const std::string n = lower(name);
  const size_t close_enough = std::max<size_t>(1, n.size() / 3);
  std::string best;
  size_t best_distance = close_enough + 1;
  for (const std::string& k : known) {
    const size_t dist = distance(n, lower(k));
    if (dist < best_distance) {
      best = k;
      best_distance = dist;
    }
  }
  if (!best.empty()) return best;
  for (const std::string& k : known) {  // warmup_steps -> warmup, momentum_w -> momentum_warmup
    const std::string lk = lower(k);
    const size_t shorter = std::min(lk.size(), n.size());
    if (shorter >= 3 && lk.compare(0, shorter, n, 0, shorter) == 0) return k;
  }
  return "";
}

}  // namespace muongpt
