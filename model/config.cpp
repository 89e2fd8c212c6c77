#include "model/config.h"

#include <cmath>

#include "core/error.h"
#include "core/toml_reader.h"

namespace muongpt {

namespace {
constexpr const char* kInvSqrtDh = "1/sqrt(d_head)";

Check<AttnScale> positive_scale() {
  return {[](const AttnScale& s) {
            return s.inv_sqrt_d_head || (s.value > 0 && std::isfinite(s.value));
          },
          std::string("must be positive, or \"") + kInvSqrtDh + "\""};
}
}  // namespace

void read_value(TomlSection& s, std::string_view key, AttnScale& v) {
  const toml::node* n = s.get_node(key);
  if (!n) return;
  if (auto str = n->value_exact<std::string>()) {
    if (*str != kInvSqrtDh)
      s.fail_key(
          key, "expected a number or \"" + std::string(kInvSqrtDh) + "\", found \"" + *str + "\"");
    v.inv_sqrt_d_head = true;
  } else {
    v = {s.get_float(key, v.value), false};
  }
}

std::string toml_value(const AttnScale& v) {
  return v.inv_sqrt_d_head ? toml_string(kInvSqrtDh) : toml_float(v.value);
}

std::string shown_value(const AttnScale& v) {
  return v.inv_sqrt_d_head ? toml_string(kInvSqrtDh) : shown_value(v.value);
}

MUONGPT_DEFINE_CONFIG_TABLE(model_config_keys, ModelConfig, "model",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_MODEL_KEYS)

double ModelConfig::attention_scale() const {
  return attn_scale.inv_sqrt_d_head ? 1.0 / std::sqrt(double(d_head)) : attn_scale.value;
}

void ModelConfig::validate(const std::string& where) const {
  const ConfigTable<ModelConfig>& keys = model_config_keys();
  keys.check(*this, where);
  if (d_model % d_head != 0)
    keys.fail(where, *this, "d_model",
              "must be divisible by d_head (" + std::to_string(d_head) + ")");
}

std::string ModelConfig::to_toml() const {
  return model_config_keys().write(*this, /*docs=*/false);
}

ModelConfig model_config_from_toml(const toml::table& root, const std::string& file) {
  ModelConfig c;
  model_config_keys().read(root, file, c);
  c.validate(file);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return model_config_from_toml(parse_toml_file(path), path);
}

}  // namespace muongpt
