// docs/config.md is the one reference for every config key: each key of each section's table
// (run_config_sections()) has a row in its section's table there, with the default the resolved
// config.toml writes, and the page lists no section or key the code does not have.
//
// A default cell is compared as TOML: backticks removed, it is read as a TOML value (`"run"`,
// `1e-6`, `[]`, `true`), and a cell that is not one is a bare string, as `--set` reads values
// (`run` is "run"). Numbers compare by value, integers with floats (1e-6 = 1e-06, 600 = 600.0);
// strings, booleans and arrays compare exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/toml_reader.h"
#include "testing/source_dir.h"
#include "train/config.h"

namespace muongpt {
namespace {

const std::string kDoc = "docs/config.md";

struct DocRow {
  std::string default_cell;
  int line;
};
// section -> key -> row, and any trouble met while reading (a key listed twice).
struct DocTables {
  std::map<std::string, std::map<std::string, DocRow>> sections;
  std::vector<std::string> problems;
};

// The cells of a Markdown table row, trimmed; a '|' inside backticks is text, not a border.
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cell;
  bool code = false;
  for (size_t i = 1; i < row.size(); ++i) {  // row[0] is the leading '|'
    const char c = row[i];
    if (c == '`') code = !code;
    if (c == '|' && !code) {
      const size_t a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
      out.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
      cell.clear();
    } else {
      cell += c;
    }
  }
  return out;
}

std::string unquoted_code(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`')
    return cell.substr(1, cell.size() - 2);
  return cell;
}

// Every `| key | type | default | meaning |` row under a "## `[section]`" heading; other headings
// end the section, so the tables of other topics are not read.
DocTables read_doc_tables(const std::string& text) {
  DocTables doc;
  std::istringstream in(text);
  std::string section;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.rfind("#", 0) == 0) {
      const size_t open = line.find("`["), close = line.find("]`");
      const bool config_heading =
          line.rfind("## ", 0) == 0 && open != std::string::npos && close != std::string::npos;
      if (config_heading) {
        section = line.substr(open + 2, close - open - 2);
        doc.sections[section];  // listed, even with an empty table
      } else if (line.rfind("## ", 0) == 0) {
        section.clear();
      }
      continue;
    }
    if (section.empty() || line.rfind("| `", 0) != 0) continue;
    const std::vector<std::string> c = cells(line);
    if (c.size() != 4) {
      doc.problems.push_back(kDoc + ":" + std::to_string(n) + ": [" + section + "] row has " +
                             std::to_string(c.size()) + " cells, expected 4");
      continue;
    }
    const std::string key = unquoted_code(c[0]);
    if (!doc.sections[section].emplace(key, DocRow{c[2], n}).second)
      doc.problems.push_back(kDoc + ":" + std::to_string(n) + ": [" + section + "] lists '" + key +
                             "' twice");
  }
  return doc;
}

// A default cell (or a written value) as a TOML node, by the rule at the top of this file.
toml::table as_value(const std::string& text) {
  try {
    return toml::parse("v = " + unquoted_code(text));
  } catch (const toml::parse_error&) {
    toml::table t;
    t.insert("v", unquoted_code(text));
    return t;
  }
}

bool same_value(const toml::node& a, const toml::node& b) {
  if (a.is_number() && b.is_number()) return a.value<double>() == b.value<double>();
  if (a.type() != b.type()) return false;
  if (a.is_string()) return a.value<std::string>() == b.value<std::string>();
  if (a.is_boolean()) return a.value<bool>() == b.value<bool>();
  if (a.is_array()) {
    const toml::array &x = *a.as_array(), &y = *b.as_array();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!same_value(x[i], y[i])) return false;
    return true;
  }
  return false;  // no key has a table or a date as its value
}

// Every mismatch between the code's sections and the page's tables, one line each.
std::vector<std::string> doc_mismatches(const std::string& doc_text) {
  DocTables doc = read_doc_tables(doc_text);
  std::vector<std::string> out = doc.problems;
  std::map<std::string, bool> code_sections;
  for (const RunConfigSection& s : run_config_sections()) {
    code_sections[s.name] = true;
    const auto found = doc.sections.find(s.name);
    if (found == doc.sections.end()) {
      out.push_back(kDoc + ": no \"## `[" + s.name + "]`\" section");
      continue;
    }
    const std::map<std::string, DocRow>& rows = found->second;
    for (const ConfigKeyInfo& k : s.keys) {
      const auto row = rows.find(k.name);
      if (row == rows.end()) {
        out.push_back(kDoc + ": [" + s.name + "] has no row for '" + k.name + "' (" + k.doc + ")");
        continue;
      }
      const toml::table written = as_value(k.default_toml),
                        documented = as_value(row->second.default_cell);
      if (!same_value(*written.get("v"), *documented.get("v")))
        out.push_back(kDoc + ":" + std::to_string(row->second.line) + ": [" + s.name + "] " +
                      k.name + ": the default cell says " + row->second.default_cell +
                      ", the code's default is " + k.default_toml);
    }
    for (const auto& [key, row] : rows) {
      bool known = false;
      for (const ConfigKeyInfo& k : s.keys) known |= k.name == key;
      if (!known)
        out.push_back(kDoc + ":" + std::to_string(row.line) + ": [" + s.name + "] lists '" + key +
                      "', which is no key of the section");
    }
  }
  for (const auto& [name, rows] : doc.sections)
    if (!code_sections.count(name))
      out.push_back(kDoc + ": documents a section [" + name + "] the code does not have");
  return out;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

TEST(ConfigDocs, EveryKeyIsDocumentedWithItsDefault) {
  const std::string text = read_text(testing::source_dir() + "/" + kDoc);
  ASSERT_FALSE(text.empty());
  const std::vector<std::string> mismatches = doc_mismatches(text);
  EXPECT_TRUE(mismatches.empty()) << joined(mismatches);
}

// The comparison itself, on copies of the page edited here: each kind of drift is caught, and
// other spellings of the same default are not drift.
TEST(ConfigDocs, CatchesAMissingKeyAWrongDefaultAndAnUnknownKey) {
  const std::string text = read_text(testing::source_dir() + "/" + kDoc);
  auto mismatches_after = [&](const std::string& from, const std::string& to) {
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    std::string t = text;
    if (at != std::string::npos) t.replace(at, from.size(), to);
    return joined(doc_mismatches(t));
  };
  auto says = [](const std::string& mismatches, const std::string& what) {
    return mismatches.find(what) != std::string::npos;
  };
  const std::string n_layer = "| `n_layer` | int | 12 | transformer blocks, at most 4096 |\n";
  EXPECT_PRED2(says, mismatches_after(n_layer, ""), "[model] has no row for 'n_layer'");
  EXPECT_PRED2(says, mismatches_after(n_layer, "| `n_layer` | int | 13 | blocks |\n"),
               "[model] n_layer: the default cell says 13, the code's default is 12");
  EXPECT_PRED2(says, mismatches_after(n_layer, n_layer + "| `n_layers` | int | 12 | typo |\n"),
               "[model] lists 'n_layers', which is no key of the section");
  EXPECT_PRED2(says, mismatches_after(n_layer, n_layer + n_layer), "[model] lists 'n_layer' twice");
  EXPECT_PRED2(says, mismatches_after("## `[telemetry]`", "## `[telemetri]`"),
               "no \"## `[telemetry]`\" section");
  EXPECT_PRED2(says, mismatches_after("| `name` | string | `\"run\"` |", "| `name` | string | 1 |"),
               "[run] name: the default cell says 1, the code's default is \"run\"");
  // The same values spelled otherwise.
  EXPECT_EQ(mismatches_after("| `norm_eps` | float | 1e-6 |", "| `norm_eps` | float | 1e-06 |"),
            "");
  EXPECT_EQ(mismatches_after("| `name` | string | `\"run\"` |", "| `name` | string | run |"), "");
  EXPECT_EQ(
      mismatches_after("| `comm_timeout` | float | 600 |", "| `comm_timeout` | float | 600.0 |"),
      "");
  EXPECT_EQ(mismatches_after("| `rules` | array of strings | `[]` |",
                             "| `rules` | array of strings | [ ] |"),
            "");
}

}  // namespace
}  // namespace muongpt
