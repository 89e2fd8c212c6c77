// The config tables (core/config_table.h) of every section: every key written then read back is
// the same value, unknown keys get the closest known key as a hint, and the value formats.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/config_table.h"
#include "core/error.h"
#include "core/toml_reader.h"
#include "train/config.h"

namespace muongpt {
namespace {

// Another value of the same TOML type as `v`, as TOML text: the test's change to one key.
std::string other_value(const toml::node& v) {
  if (auto i = v.value_exact<int64_t>()) return std::to_string(*i + 7);
  if (auto d = v.value_exact<double>())
    return toml_float(*d * 1.5 + 0.1);  // 0.8 -> 1.3000000000000003
  if (auto b = v.value_exact<bool>()) return *b ? "false" : "true";
  if (auto s = v.value_exact<std::string>()) return toml_string(*s + "-x \"q\" \\ é\t\r");
  if (v.is_array()) return toml_value(std::vector<std::string>{"a = \"b\"", "c\\d", ""});
  ADD_FAILURE() << "no other value for a " << v.type();
  return "";
}

// For each key of `keys`: a section setting that key alone to another value reads into a config
// that differs from the default, writes (with docs) a section that reads back to the same config,
// and writes that key's value as it was given.
template <typename S>
void expect_every_key_round_trips(const ConfigTable<S>& keys) {
  for (const ConfigKey<S>& k : keys.keys()) {
    SCOPED_TRACE("[" + keys.section() + "] " + k.name);
    const toml::table def = parse_toml_string("v = " + k.toml(S{}), "default");
    const std::string value = other_value(*def.get("v"));
    const std::string text = "[" + keys.section() + "]\n" + k.name + " = " + value + "\n";
    S c;
    keys.read(parse_toml_string(text, "given.toml"), "given.toml", c);
    EXPECT_FALSE(c == S{}) << text;
    const std::string written = keys.write(c, /*docs=*/true);
    S back;
    keys.read(parse_toml_string(written, "written.toml"), "written.toml", back);
    EXPECT_TRUE(back == c) << written;
    EXPECT_EQ(k.toml(back), value) << written;
    EXPECT_FALSE(k.doc.empty());
    EXPECT_EQ(k.doc.find('\n'), std::string::npos) << k.doc;
  }
}

TEST(ConfigTables, EveryKeyOfEverySectionRoundTrips) {
  std::vector<std::string> tested;
  auto round_trip = [&](const auto& keys) {
    expect_every_key_round_trips(keys);
    tested.push_back(keys.section());
  };
  round_trip(run_section_keys());
  round_trip(model_config_keys());
  round_trip(data_config_keys());
  round_trip(train_config_keys());
  round_trip(optim_config_keys());
  round_trip(adamw_config_keys());
  round_trip(muon_config_keys());
  round_trip(criterion_config_keys());
  round_trip(schedule_config_keys());
  round_trip(telemetry_config_keys());
  round_trip(device_config_keys());
  std::vector<std::string> sections;
  for (const RunConfigSection& s : run_config_sections()) sections.push_back(s.name);
  EXPECT_EQ(tested, sections) << "a new section needs its line above";
}

TEST(ConfigTables, CustomValuesRoundTrip) {
  ModelConfig c;
  c.attn_scale.inv_sqrt_d_head = true;
  ModelConfig back;
  model_config_keys().read(parse_toml_string(c.to_toml(), "m.toml"), "m.toml", back);
  EXPECT_TRUE(back == c) << c.to_toml();
  // Every key's default, all at once, through the whole resolved config.
  const RunConfig defaults = run_config_from_string(RunConfig{}.to_toml(), "resolved.toml");
  EXPECT_EQ(defaults.to_toml(), RunConfig{}.to_toml());
  EXPECT_TRUE(defaults.model == ModelConfig{});
  EXPECT_TRUE(defaults.optim == OptimConfig{});
  EXPECT_TRUE(defaults.device == DeviceConfig{});
}

TEST(ConfigTables, TheResolvedConfigCommentsEveryKey) {
  const std::string text = RunConfig{}.to_toml();
  EXPECT_EQ(text.rfind("# resolved config: every key spelled out (docs/config.md)\n\n[run]\n", 0),
            0u)
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("\nn_layer = 12 +# transformer blocks\n")))
      << text;
  EXPECT_TRUE(std::regex_search(text, std::regex("\neps = 1e-10 +# added to sqrt\\(v\\)\n")))
      << text;
  // One line per key, each with its comment, the comments of a section in one column.
  size_t keys = 0;
  for (const RunConfigSection& s : run_config_sections()) keys += s.keys.size();
  EXPECT_EQ(size_t(std::count(text.begin(), text.end(), '#')), keys + 1) << text;
  EXPECT_NE(text.find("seed = 1337   # parameter init and data order\n"), std::string::npos)
      << text;
}

std::pair<std::string, std::string> error_and_hint(const std::string& text) {
  try {
    run_config_from_string(text, "t.toml");
  } catch (const Error& e) {
    return {e.what(), e.hint()};
  }
  return {"(no error)", ""};
}

TEST(ConfigTables, UnknownKeysSuggestTheClosestKey) {
  using Pair = std::pair<std::string, std::string>;
  EXPECT_EQ(error_and_hint("[model]\nn_layers = 2\n"),
            Pair("t.toml: [model] unknown key 'n_layers'", "did you mean 'n_layer'?"));
  EXPECT_EQ(error_and_hint("[model]\nd_modle = 64\n").second, "did you mean 'd_model'?");
  EXPECT_EQ(error_and_hint("[train]\nstep = 3\n").second, "did you mean 'steps'?");
  EXPECT_EQ(error_and_hint("[schedule]\nwarmup_steps = 3\n").second, "did you mean 'warmup'?");
  EXPECT_EQ(error_and_hint("[optim.muon]\nnesterov_on = true\n").second,
            "did you mean 'nesterov'?");
  EXPECT_EQ(error_and_hint("[optim]\nrule = []\n").second, "did you mean 'rules'?");
  EXPECT_EQ(error_and_hint("[device]\nPrecision = \"bf16\"\n").second, "did you mean 'precision'?");
  EXPECT_EQ(error_and_hint("[model]\nfrobnicate = 1\n"),
            Pair("t.toml: [model] unknown key 'frobnicate'", ""));  // nothing close
  EXPECT_EQ(error_and_hint("[trian]\nsteps = 3\n"),
            Pair("t.toml: unknown section [trian]", "did you mean [train]?"));
  // Every key of every section, misspelt with a trailing 's', is suggested back.
  for (const RunConfigSection& s : run_config_sections())
    for (const ConfigKeyInfo& k : s.keys) {
      bool taken = false;
      for (const ConfigKeyInfo& other : s.keys) taken |= other.name == k.name + "s";
      if (taken) continue;
      EXPECT_EQ(error_and_hint("[" + s.name + "]\n" + k.name + "s = 1\n").second,
                "did you mean '" + k.name + "'?")
          << "[" << s.name << "] " << k.name;
    }
}

TEST(ConfigTables, ValueFormats) {
  EXPECT_EQ(toml_float(1e-6), "1e-06");
  EXPECT_EQ(toml_float(600), "600.0");
  EXPECT_EQ(toml_float(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(toml_float(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(toml_string("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(toml_value(std::vector<std::string>{}), "[]");
  EXPECT_EQ(shown_value(-1.0), "-1");  // messages print numbers as a stream does
  EXPECT_EQ(closest_name("lr_mul", {"lr", "lr_mult"}), "lr_mult");
  EXPECT_EQ(closest_name("zz", {"lr", "wd"}), "");
}

TEST(ConfigTables, ChecksSayWhy) {
  using namespace config_checks;
  EXPECT_EQ(positive().failure(-2)->why, "must be positive");
  EXPECT_FALSE(positive().failure(3).has_value());
  EXPECT_TRUE(positive().failure(std::numeric_limits<double>::infinity()).has_value());
  EXPECT_FALSE(at_least(0).failure(std::numeric_limits<double>::infinity()).has_value());
  EXPECT_EQ(in_range(1, 100).failure(0)->why, "must be in 1..100");
  EXPECT_EQ(at_least(0).note("0 = off").failure(-1)->why, "must be >= 0 (0 = off)");
  EXPECT_EQ((positive() & multiple_of(4)).failure(6)->why, "must be a multiple of 4");
  EXPECT_EQ(positive().says("must be at least 1").failure(0)->why, "must be at least 1");
  const Check<int64_t> on_ints = in_unit_interval();
  EXPECT_TRUE(on_ints.failure(1).has_value());
  const auto choice = one_of({"a", "b", "c"}).failure("d");
  EXPECT_EQ(choice->why, "expected \"a\", \"b\" or \"c\"");
  EXPECT_TRUE(choice->lists_choices);
}

}  // namespace
}  // namespace muongpt
