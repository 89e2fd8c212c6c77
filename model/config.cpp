#include "model/config.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"

namespace muongpt {

namespace {
constexpr const char* kInvSqrtDh = "1/sqrt(d_head)";

std::string toml_float(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  std::string s = os.str();
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}
}  // namespace

double ModelConfig::attention_scale() const {
  return attn_scale_inv_sqrt_dh ? 1.0 / std::sqrt(double(d_head)) : attn_scale;
}

void ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const char* key, auto value, const std::string& why) {
    fail(where, "[model] ", key, " = ", value, ": ", why);
  };
  if (vocab_size <= 0) bad("vocab_size", vocab_size, "must be positive");
  if (vocab_size > 65536) bad("vocab_size", vocab_size, "must fit uint16 token ids (<= 65536)");
  if (vocab_multiple <= 0) bad("vocab_multiple", vocab_multiple, "must be positive");
  if (n_layer <= 0) bad("n_layer", n_layer, "must be positive");
  if (d_model <= 0) bad("d_model", d_model, "must be positive");
  if (d_head <= 0) bad("d_head", d_head, "must be positive");
  if (d_head % 4 != 0) bad("d_head", d_head, "must be a multiple of 4 (half-truncated RoPE)");
  if (d_model % d_head != 0)
    bad("d_model", d_model, "must be divisible by d_head (" + std::to_string(d_head) + ")");
  if (mlp_ratio <= 0) bad("mlp_ratio", mlp_ratio, "must be positive");
  if (seq_len <= 0) bad("seq_len", seq_len, "must be positive");
  if (!(norm_eps > 0) || !std::isfinite(norm_eps)) bad("norm_eps", norm_eps, "must be positive");
  if (!attn_scale_inv_sqrt_dh && (!(attn_scale > 0) || !std::isfinite(attn_scale)))
    bad("attn_scale", attn_scale, std::string("must be positive, or \"") + kInvSqrtDh + "\"");
  if (!(rope_base > 1) || !std::isfinite(rope_base)) bad("rope_base", rope_base, "must be > 1");
  if (!(softcap >= 0) || !std::isfinite(softcap))
    bad("softcap", softcap, "must be >= 0 (0 turns it off)");
}

std::string ModelConfig::to_toml() const {
  std::ostringstream os;
  os << "[model]\n"
     << "vocab_size = " << vocab_size << "\n"
     << "vocab_multiple = " << vocab_multiple << "\n"
     << "n_layer = " << n_layer << "\n"
     << "d_model = " << d_model << "\n"
     << "d_head = " << d_head << "\n"
     << "mlp_ratio = " << mlp_ratio << "\n"
     << "seq_len = " << seq_len << "\n"
     << "norm_eps = " << toml_float(norm_eps) << "\n"
     << "norm_gains = " << (norm_gains ? "true" : "false") << "\n"
     << "attn_scale = "
     << (attn_scale_inv_sqrt_dh ? std::string("\"") + kInvSqrtDh + "\"" : toml_float(attn_scale))
     << "\n"
     << "rope_base = " << toml_float(rope_base) << "\n"
     << "softcap = " << toml_float(softcap) << "\n";
  return os.str();
}

ModelConfig model_config_from_toml(const toml::table& root, const std::string& file) {
  TomlSection s = TomlSection::of(root, file, "model");
  ModelConfig c;
  c.vocab_size = s.get_int("vocab_size", c.vocab_size);
  c.vocab_multiple = s.get_int("vocab_multiple", c.vocab_multiple);
  c.n_layer = s.get_int("n_layer", c.n_layer);
  c.d_model = s.get_int("d_model", c.d_model);
  c.d_head = s.get_int("d_head", c.d_head);
  c.mlp_ratio = s.get_int("mlp_ratio", c.mlp_ratio);
  c.seq_len = s.get_int("seq_len", c.seq_len);
  c.norm_eps = s.get_float("norm_eps", c.norm_eps);
  c.norm_gains = s.get_bool("norm_gains", c.norm_gains);
  if (const toml::node* n = s.get_node("attn_scale")) {
    if (auto str = n->value_exact<std::string>()) {
      if (*str != kInvSqrtDh)
        s.fail_key("attn_scale", "expected a number or \"" + std::string(kInvSqrtDh) +
                                     "\", found \"" + *str + "\"");
      c.attn_scale_inv_sqrt_dh = true;
    } else {
      c.attn_scale = s.get_float("attn_scale", c.attn_scale);
    }
  }
  c.rope_base = s.get_float("rope_base", c.rope_base);
  c.softcap = s.get_float("softcap", c.softcap);
  s.finish();
  c.validate(file);
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  return model_config_from_toml(parse_toml_file(path), path);
}

}  // namespace muongpt
