#include "train/config.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"
#include "core/utf8.h"

namespace muongpt {

namespace {

// Sets root[a.b.c] = value, creating tables on the way. The value is parsed as TOML; what does
// not parse is taken as a string (so --set run.name=foo works without quotes).
void apply_override(toml::table& root, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set " + text, "expected section.key=value");
  const std::string path = text.substr(0, eq), value = text.substr(eq + 1);
  const size_t last_dot = path.rfind('.');
  if (last_dot == std::string::npos || last_dot == 0 || last_dot + 1 == path.size())
    fail("--set " + text, "expected section.key=value (the key needs its section)");
  toml::table* table = &root;
  std::stringstream parts(path.substr(0, last_dot));
  for (std::string part; std::getline(parts, part, '.');) {
    toml::node* next = table->get(part);
    if (!next) next = &table->insert_or_assign(part, toml::table{}).first->second;
    if (!next->is_table()) fail("--set " + text, "'", part, "' is not a section");
    table = next->as_table();
  }
  const std::string key = path.substr(last_dot + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    if (!is_valid_utf8(value))  // a TOML file could not hold it, so no run could be resumed
      fail("--set " + text, "the value is not valid UTF-8");
    table->insert_or_assign(key, value);
    return;
  }
  table->insert_or_assign(key, std::move(*parsed.get("v")));
}

// [run] name: one directory level, so the run cannot land outside <dir>.
Check<std::string> directory_name() {
  return {[](const std::string& name) {
            return !name.empty() && name.find('/') == std::string::npos && name != "." &&
                   name != "..";
          },
          [](const std::string& name) { return "'" + name + "' is not a directory name"; }};
}

template <typename S>
S read_checked(const ConfigTable<S>& keys, const toml::table& root, const std::string& file) {
  S c;
  keys.read(root, file, c);
  keys.check(c, file);
  return c;
}

void check_section_names(const toml::table& root, const std::string& file) {
  std::vector<std::string> known;
  for (const RunConfigSection& s : run_config_sections()) {
    const std::string top = s.name.substr(0, s.name.find('.'));  // [optim.muon] lives in [optim]
    if (std::find(known.begin(), known.end(), top) == known.end()) known.push_back(top);
  }
  for (const auto& [key, node] : root) {
    if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
    const std::string near = closest_name(key.str(), known);
    throw Error(file, "unknown section [" + std::string(key.str()) + "]",
                near.empty() ? "" : "did you mean [" + near + "]?");
  }
}

RunConfig parse(toml::table& root, const std::string& file,
                const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) apply_override(root, o);
  check_section_names(root, file);
  RunConfig c;
  c.file = file;
  c.run = read_checked(run_section_keys(), root, file);
  c.model = model_config_from_toml(root, file);
  c.data = read_checked(data_config_keys(), root, file);
  if (c.data.seq_len < 0 || c.data.seq_len > c.model.seq_len)
    data_config_keys().fail(file, c.data, "seq_len",
                            "must be in [0, [model] seq_len = " + std::to_string(c.model.seq_len) +
                                "] (0 = the model's)");
  c.train = read_checked(train_config_keys(), root, file);
  c.optim = optim_config_from_toml(root, file);
  if (c.optim.routing == "criterion" && c.optim.criterion.probe_steps >= c.train.steps)
    criterion_config_keys().fail(
        file, c.optim.criterion, "probe_steps",
        "must be less than [train] steps = " + std::to_string(c.train.steps) +
            " (the decision needs steps after it)");
  c.schedule = schedule_config_from_toml(root, file);
  c.telemetry = read_checked(telemetry_config_keys(), root, file);
  c.device = read_checked(device_config_keys(), root, file);
  if (c.device.attention == "flash" && c.device.precision != "bf16")
    device_config_keys().fail(
        file, c.device, "attention",
        "\"flash\" runs in bf16 only (precision is \"" + c.device.precision + "\")");
  return c;
}

// A section of RunConfig, reached from it through the member pointers `path`.
template <typename S, typename... Path>
RunConfigSection erased(const ConfigTable<S>& keys, Path... path) {
  // clang-format off
  return {keys.section(), keys.key_info(),
          [&keys, path...](const RunConfig& c) {
            return keys.write((c .* ... .* path), /*docs=*/true);  // c.*path[0].*path[1]...
          },
          [&keys, path...](const RunConfig& c) { return keys.assignments((c .* ... .* path)); }};
  // clang-format on
}

}  // namespace

// The run sections' errors name the key without its value ("[train] steps: must be positive").
MUONGPT_DEFINE_CONFIG_TABLE(run_section_keys, RunSection, "run", ValueErrorForm::kKeyOnly,
                            MUONGPT_RUN_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(data_config_keys, DataConfig, "data", ValueErrorForm::kKeyOnly,
                            MUONGPT_DATA_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(train_config_keys, TrainConfig, "train", ValueErrorForm::kKeyOnly,
                            MUONGPT_TRAIN_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(telemetry_config_keys, TelemetryConfig, "telemetry",
                            ValueErrorForm::kKeyOnly, MUONGPT_TELEMETRY_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(device_config_keys, DeviceConfig, "device", ValueErrorForm::kKeyOnly,
                            MUONGPT_DEVICE_KEYS)

const std::vector<RunConfigSection>& run_config_sections() {
  static const std::vector<RunConfigSection> sections = {
      erased(run_section_keys(), &RunConfig::run),
      erased(model_config_keys(), &RunConfig::model),
      erased(data_config_keys(), &RunConfig::data),
      erased(train_config_keys(), &RunConfig::train),
      erased(optim_config_keys(), &RunConfig::optim),
      erased(adamw_config_keys(), &RunConfig::optim, &OptimConfig::adamw),
      erased(muon_config_keys(), &RunConfig::optim, &OptimConfig::muon),
      erased(criterion_config_keys(), &RunConfig::optim, &OptimConfig::criterion),
      erased(schedule_config_keys(), &RunConfig::schedule),
      erased(telemetry_config_keys(), &RunConfig::telemetry),
      erased(device_config_keys(), &RunConfig::device),
  };
  return sections;
}

std::vector<std::pair<std::string, std::string>> config_values(const RunConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const RunConfigSection& s : run_config_sections())
    for (const std::string& a : s.assignments(cfg)) {
      const size_t eq = a.find(" = ");
      out.emplace_back(s.name + "." + a.substr(0, eq), a.substr(eq + 3));
    }
  return out;
}

std::string RunConfig::run_dir() const {
  return (std::filesystem::path(run.dir) / run.name).string();
}

std::string RunConfig::to_toml() const {
  std::string out = "# resolved config: every key spelled out (docs/config.md)\n";
  for (const RunConfigSection& s : run_config_sections()) {
    out += "\n";
    out += s.write(*this);
  }
  return out;
}

namespace {

// Whatever is accepted must be saved and read back the same (a resumed run reads its
// config.toml): what cannot is refused now, not at the first resume.
RunConfig round_tripped(RunConfig c) {
  const std::string text = c.to_toml();
  std::string back;
  try {
    toml::table root = parse_toml_string(text, c.file + " (resolved)");
    back = parse(root, c.file, {}).to_toml();
  } catch (const Error& e) {
    fail(c.file, "the resolved config would not read back: ", e.what());
  }
  if (back != text) {
    std::istringstream a(text), b(back);
    std::string la, lb;
    while (std::getline(a, la) && std::getline(b, lb) && la == lb) {
    }
    fail(c.file, "the resolved config would not read back the same: '", la, "' became '", lb, "'");
  }
  return c;
}

}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  toml::table root = parse_toml_file(path);
  return round_tripped(parse(root, path, overrides));
}

RunConfig run_config_from_string(const std::string& toml_text, const std::string& name,
                                 const std::vector<std::string>& overrides) {
  toml::table root = parse_toml_string(toml_text, name);
  return round_tripped(parse(root, name, overrides));
}

}  // namespace muongpt
