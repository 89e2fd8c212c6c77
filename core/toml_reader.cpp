#include "core/toml_reader.h"

#include <sstream>

#include "core/error.h"

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
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    if (e.source().begin.line == 0) fail(path, "cannot read file: ", e.description());
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
  read_.insert(std::string(key));
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
    if (!read_.contains(key.str())) fail(file_, "[", section_, "] unknown key '", key.str(), "'");
  }
}

}  // namespace muongpt
