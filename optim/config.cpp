#include "optim/config.h"

#include "core/error.h"
#include "core/toml_reader.h"
#include "optim/dualizer.h"
#include "optim/routing.h"

namespace muongpt {

MUONGPT_DEFINE_CONFIG_TABLE(optim_config_keys, OptimConfig, "optim",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_OPTIM_KEYS,
                            {"adamw", "muon", "criterion"})

MUONGPT_DEFINE_CONFIG_TABLE(adamw_config_keys, AdamWConfig, "optim.adamw",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_ADAMW_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(muon_config_keys, MuonConfig, "optim.muon",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_MUON_KEYS)

MUONGPT_DEFINE_CONFIG_TABLE(criterion_config_keys, CriterionConfig, "optim.criterion",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_CRITERION_KEYS)

void OptimConfig::validate(const std::string& file) const {
  optim_config_keys().check(*this, file);
  adamw_config_keys().check(adamw, file);
  muon_config_keys().check(muon, file);
  criterion_config_keys().check(criterion, file);

  const NsCoeffs coeffs = parse_ns_coeffs(muon.ns_coeffs, file, "[optim.muon] ns_coeffs");
  DualizerSpec ns_default;
  ns_default.coeffs = coeffs;
  ns_default.ns_steps = static_cast<int>(muon.ns_steps);
  ns_default.ns_eps = muon.ns_eps;
  parse_dualizer(muon.dualizer, ns_default, file, "[optim.muon] dualizer");
  try {
    muon_shape_scale(muon.scale, 1, 1);
  } catch (const Error&) {
    muon_config_keys().fail(file, muon, "scale",
                            "expected \"keller\", \"spectral\", \"moonlight\" or \"none\"");
  }

  // Routing: the preset exists and every rule parses (including its options).
  if (routing == "criterion" && (criterion.base == "criterion" || criterion.base == "none"))
    criterion_config_keys().fail(file, criterion, "base",
                                 "the probe window's routing is a preset (adamw, muon-wout, ...)");
  if (routing == "criterion" && criterion.candidates.empty())
    criterion_config_keys().fail(file, criterion, "candidates", "name at least one glob");
  if (preset() != "none") preset_rules(preset(), file);
  if (routing == "none" && rules.empty())
    fail(file, "[optim] routing = \"none\" needs rules (or name a preset: speedrun, adamw, ...)");
  routing_rules(*this, file);
}

std::string OptimConfig::to_toml() const {
  return optim_config_keys().write(*this, /*docs=*/false) + "\n" +
         adamw_config_keys().write(adamw, /*docs=*/false) + "\n" +
         muon_config_keys().write(muon, /*docs=*/false) + "\n" +
         criterion_config_keys().write(criterion, /*docs=*/false);
}

namespace {
// DESIGN.md's short form `routing = [rules]` means `rules = [rules]` with `routing = "none"`. The
// [optim] table knows only the long form, so the short one is rewritten before the table reads it.
toml::table long_form_optim(const toml::table& root, const std::string& file) {
  TomlSection s = TomlSection::of(root, file, "optim");  // fails unless [optim] is a table
  const toml::table* given = root.at_path("optim").as_table();
  toml::table optim = given ? *given : toml::table{};
  const toml::node* routing = optim.get("routing");
  if (!routing || routing->is_string()) return optim;
  if (!routing->is_array()) s.fail_key("routing", "expected a preset name or an array of rules");
  if (optim.contains("rules"))
    s.fail_key("rules", "give the rules either as `routing = [...]` or as `rules = [...]`");
  std::vector<std::string> rules;
  read_value(s, "routing", rules);  // every element a string, named as the file has it
  toml::array as_rules = *routing->as_array();
  optim.insert_or_assign("rules", std::move(as_rules));
  optim.insert_or_assign("routing", "none");
  return optim;
}
}  // namespace

OptimConfig optim_config_from_toml(const toml::table& root, const std::string& file) {
  OptimConfig c;
  const toml::table optim = long_form_optim(root, file);
  TomlSection s(&optim, file, "optim");
  optim_config_keys().read(s, c);
  adamw_config_keys().read(root, file, c.adamw);
  muon_config_keys().read(root, file, c.muon);
  criterion_config_keys().read(root, file, c.criterion);
  c.validate(file);
  return c;
}

}  // namespace muongpt
