#include "optim/config.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"
#include "optim/dualizer.h"
#include "optim/routing.h"

namespace muongpt {

std::string optim_toml_float(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::isnan(v)) return "nan";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  std::string s(buf, res.ptr);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";  // keep it a TOML float
  return s;
}

std::string optim_toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void OptimConfig::validate(const std::string& file) const {
  auto bad = [&](const char* section, const char* key, auto value, const std::string& why) {
    std::ostringstream os;
    os << value;
    fail(file, "[", section, "] ", key, " = ", os.str(), ": ", why);
  };
  auto in_unit = [](double x) { return x >= 0 && x < 1; };
  auto nonneg = [](double x) { return x >= 0 && std::isfinite(x); };

  const AdamWConfig& a = adamw;
  if (!in_unit(a.beta1)) bad("optim.adamw", "beta1", a.beta1, "must be in [0, 1)");
  if (!in_unit(a.beta2)) bad("optim.adamw", "beta2", a.beta2, "must be in [0, 1)");
  if (!(a.eps > 0) || !std::isfinite(a.eps)) bad("optim.adamw", "eps", a.eps, "must be positive");
  if (!nonneg(a.wd)) bad("optim.adamw", "wd", a.wd, "must be >= 0");
  if (!nonneg(a.embed_lr)) bad("optim.adamw", "embed_lr", a.embed_lr, "must be >= 0");
  if (!nonneg(a.head_lr)) bad("optim.adamw", "head_lr", a.head_lr, "must be >= 0");
  if (!nonneg(a.scalar_lr)) bad("optim.adamw", "scalar_lr", a.scalar_lr, "must be >= 0");
  if (!nonneg(a.matrix_lr)) bad("optim.adamw", "matrix_lr", a.matrix_lr, "must be >= 0");

  const MuonConfig& m = muon;
  if (!nonneg(m.lr)) bad("optim.muon", "lr", m.lr, "must be >= 0");
  if (!in_unit(m.momentum)) bad("optim.muon", "momentum", m.momentum, "must be in [0, 1)");
  if (!in_unit(m.momentum_start))
    bad("optim.muon", "momentum_start", m.momentum_start, "must be in [0, 1)");
  if (m.momentum_warmup < 0)
    bad("optim.muon", "momentum_warmup", m.momentum_warmup, "must be >= 0");
  if (m.momentum_kind != "ema" && m.momentum_kind != "classic")
    bad("optim.muon", "momentum_kind", optim_toml_string(m.momentum_kind),
        "expected \"ema\" or \"classic\"");
  if (m.ns_steps < 1 || m.ns_steps > 100)
    bad("optim.muon", "ns_steps", m.ns_steps, "must be in 1..100");
  if (!(m.ns_eps > 0) || !std::isfinite(m.ns_eps))
    bad("optim.muon", "ns_eps", m.ns_eps, "must be positive");
  if (!nonneg(m.wd)) bad("optim.muon", "wd", m.wd, "must be >= 0");
  const NsCoeffs coeffs = parse_ns_coeffs(m.ns_coeffs, file, "[optim.muon] ns_coeffs");
  DualizerSpec ns_default;
  ns_default.coeffs = coeffs;
  ns_default.ns_steps = static_cast<int>(m.ns_steps);
  ns_default.ns_eps = m.ns_eps;
  parse_dualizer(m.dualizer, ns_default, file, "[optim.muon] dualizer");
  try {
    muon_shape_scale(m.scale, 1, 1);
  } catch (const Error&) {
    bad("optim.muon", "scale", optim_toml_string(m.scale),
        "expected \"keller\", \"spectral\", \"moonlight\" or \"none\"");
  }

  // Routing: the preset exists and every rule parses (including its options).
  if (routing != "none") preset_rules(routing, file);
  if (routing == "none" && rules.empty())
    fail(file, "[optim] routing = \"none\" needs rules (or name a preset: speedrun, adamw, ...)");
  routing_rules(*this, file);
}

std::string OptimConfig::to_toml() const {
  std::ostringstream os;
  os << "[optim]\n"
     << "routing = " << optim_toml_string(routing) << "\n"
     << "rules = [";
  for (size_t i = 0; i < rules.size(); ++i) os << (i ? ", " : "") << optim_toml_string(rules[i]);
  os << "]\n\n"
     << "[optim.adamw]\n"
     << "beta1 = " << optim_toml_float(adamw.beta1) << "\n"
     << "beta2 = " << optim_toml_float(adamw.beta2) << "\n"
     << "eps = " << optim_toml_float(adamw.eps) << "\n"
     << "wd = " << optim_toml_float(adamw.wd) << "\n"
     << "embed_lr = " << optim_toml_float(adamw.embed_lr) << "\n"
     << "head_lr = " << optim_toml_float(adamw.head_lr) << "\n"
     << "scalar_lr = " << optim_toml_float(adamw.scalar_lr) << "\n"
     << "matrix_lr = " << optim_toml_float(adamw.matrix_lr) << "\n\n"
     << "[optim.muon]\n"
     << "lr = " << optim_toml_float(muon.lr) << "\n"
     << "momentum = " << optim_toml_float(muon.momentum) << "\n"
     << "momentum_start = " << optim_toml_float(muon.momentum_start) << "\n"
     << "momentum_warmup = " << muon.momentum_warmup << "\n"
     << "momentum_kind = " << optim_toml_string(muon.momentum_kind) << "\n"
     << "nesterov = " << (muon.nesterov ? "true" : "false") << "\n"
     << "dualizer = " << optim_toml_string(muon.dualizer) << "\n"
     << "ns_coeffs = " << optim_toml_string(muon.ns_coeffs) << "\n"
     << "ns_steps = " << muon.ns_steps << "\n"
     << "ns_eps = " << optim_toml_float(muon.ns_eps) << "\n"
     << "scale = " << optim_toml_string(muon.scale) << "\n"
     << "wd = " << optim_toml_float(muon.wd) << "\n";
  return os.str();
}

namespace {
std::vector<std::string> string_array(TomlSection& s, std::string_view key, const toml::node& n) {
  const toml::array* arr = n.as_array();
  if (!arr) s.fail_key(key, "expected an array of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    auto v = (*arr)[i].value_exact<std::string>();
    if (!v) s.fail_key(key, "element " + std::to_string(i) + " is not a string");
    out.push_back(*v);
  }
  return out;
}
}  // namespace

OptimConfig optim_config_from_toml(const toml::table& root, const std::string& file) {
  OptimConfig c;
  TomlSection s = TomlSection::of(root, file, "optim");
  bool routing_is_rules = false;
  if (const toml::node* n = s.get_node("routing")) {
    if (auto str = n->value_exact<std::string>()) {
      c.routing = *str;
    } else if (n->is_array()) {
      c.rules = string_array(s, "routing", *n);
      c.routing = "none";
      routing_is_rules = true;
    } else {
      s.fail_key("routing", "expected a preset name or an array of rules");
    }
  }
  if (const toml::node* n = s.get_node("rules")) {
    if (routing_is_rules)
      s.fail_key("rules", "give the rules either as `routing = [...]` or as `rules = [...]`");
    c.rules = string_array(s, "rules", *n);
  }
  s.get_node("adamw");  // sub-tables, read below
  s.get_node("muon");
  s.finish();

  TomlSection a = TomlSection::of(root, file, "optim.adamw");
  c.adamw.beta1 = a.get_float("beta1", c.adamw.beta1);
  c.adamw.beta2 = a.get_float("beta2", c.adamw.beta2);
  c.adamw.eps = a.get_float("eps", c.adamw.eps);
  c.adamw.wd = a.get_float("wd", c.adamw.wd);
  c.adamw.embed_lr = a.get_float("embed_lr", c.adamw.embed_lr);
  c.adamw.head_lr = a.get_float("head_lr", c.adamw.head_lr);
  c.adamw.scalar_lr = a.get_float("scalar_lr", c.adamw.scalar_lr);
  c.adamw.matrix_lr = a.get_float("matrix_lr", c.adamw.matrix_lr);
  a.finish();

  TomlSection m = TomlSection::of(root, file, "optim.muon");
  c.muon.lr = m.get_float("lr", c.muon.lr);
  c.muon.momentum = m.get_float("momentum", c.muon.momentum);
  c.muon.momentum_start = m.get_float("momentum_start", c.muon.momentum_start);
  c.muon.momentum_warmup = m.get_int("momentum_warmup", c.muon.momentum_warmup);
  c.muon.momentum_kind = m.get_string("momentum_kind", c.muon.momentum_kind);
  c.muon.nesterov = m.get_bool("nesterov", c.muon.nesterov);
  c.muon.dualizer = m.get_string("dualizer", c.muon.dualizer);
  c.muon.ns_coeffs = m.get_string("ns_coeffs", c.muon.ns_coeffs);
  c.muon.ns_steps = m.get_int("ns_steps", c.muon.ns_steps);
  c.muon.ns_eps = m.get_float("ns_eps", c.muon.ns_eps);
  c.muon.scale = m.get_string("scale", c.muon.scale);
  c.muon.wd = m.get_float("wd", c.muon.wd);
  m.finish();

  c.validate(file);
  return c;
}

}  // namespace muongpt
