#include "optim/routing.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "core/error.h"
#include "optim/dualizer.h"

namespace muongpt {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string shape_str(const std::vector<int64_t>& shape, const char* sep) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? sep : "") + std::to_string(shape[i]);
  return s;
}

// Index of the '}' closing the '{' at g[open], or npos.
size_t closing_brace(std::string_view g, size_t open) {
  int depth = 0;
  for (size_t i = open; i < g.size(); ++i) {
    if (g[i] == '{') ++depth;
    if (g[i] == '}' && --depth == 0) return i;
  }
  return std::string_view::npos;
}

// Matches the set at g[i] == '['; on return `end` is the index after ']'.
bool class_match(std::string_view g, size_t i, char ch, size_t& end) {
  size_t j = i + 1;
  const bool negate = j < g.size() && g[j] == '!';
  if (negate) ++j;
  bool hit = false;
  for (bool first = true; j < g.size() && (g[j] != ']' || first); first = false) {
    if (j + 2 < g.size() && g[j + 1] == '-' && g[j + 2] != ']') {
      hit |= g[j] <= ch && ch <= g[j + 2];
      j += 3;
    } else {
      hit |= g[j] == ch;
      ++j;
    }
  }
  end = j + 1;
  return hit != negate;
}

bool match_from(std::string_view g, size_t gi, std::string_view s, size_t si) {
  while (gi < g.size()) {
    const char c = g[gi];
    if (c == '*') {
      while (gi < g.size() && g[gi] == '*') ++gi;
      if (gi == g.size()) return true;
      for (size_t k = si; k <= s.size(); ++k)
        if (match_from(g, gi, s, k)) return true;
      return false;
    }
    if (c == '{') {
      const size_t close = closing_brace(g, gi);
      std::string_view body = g.substr(gi + 1, close - gi - 1);
      std::string_view rest = g.substr(close + 1);
      int depth = 0;
      size_t start = 0;
      for (size_t k = 0; k <= body.size(); ++k) {
        if (k < body.size() && body[k] == '{') ++depth;
        if (k < body.size() && body[k] == '}') --depth;
        if (k == body.size() || (body[k] == ',' && depth == 0)) {
          std::string alt(body.substr(start, k - start));
          alt += rest;
          if (match_from(alt, 0, s, si)) return true;
          start = k + 1;
        }
      }
      return false;
    }
    if (si >= s.size()) return false;
    if (c == '?') {
      ++gi, ++si;
    } else if (c == '[') {
      size_t end = 0;
      if (!class_match(g, gi, s[si], end)) return false;
      gi = end, ++si;
    } else {
      if (c != s[si]) return false;
      ++gi, ++si;
    }
  }
  return si == s.size();
}

// Empty when the glob is well formed, else what is wrong.
std::string glob_problem(std::string_view g) {
  if (g.empty()) return "empty glob";
  for (size_t i = 0; i < g.size(); ++i) {
    if (g[i] == ' ' || g[i] == '\t') return "a glob has no spaces";
    if (g[i] == '{' && closing_brace(g, i) == std::string_view::npos) return "unclosed '{'";
    if (g[i] == '}') {
      int depth = 0;
      for (size_t k = 0; k <= i; ++k) depth += g[k] == '{' ? 1 : g[k] == '}' ? -1 : 0;
      if (depth < 0) return "'}' without '{'";
    }
    if (g[i] == '[') {
      size_t j = i + 1;
      if (j < g.size() && g[j] == '!') ++j;
      if (j < g.size() && g[j] == ']') ++j;  // a leading ']' is a member
      while (j < g.size() && g[j] != ']') ++j;
      if (j == g.size()) return "unclosed '['";
      i = j;
    }
  }
  return "";
}

const std::map<std::string, std::vector<std::string>>& preset_table() {
  static const std::map<std::string, std::vector<std::string>> table = {
      {"speedrun", {"blocks.* = muon", "* = adamw"}},
      {"adamw", {"* = adamw"}},
      {"muon-wout", {"blocks.*.mlp.w2 = muon", "* = adamw"}},
      // w3 (mlp = "swiglu" only) is an MLP input projection like w1; muon-wout stays w2 only.
      {"muon-mlp", {"blocks.*.mlp.w{1,2,3} = muon", "* = adamw"}},
      {"muon-attn-mlp",
       {"blocks.*.attn.w{q,k,v,o} = muon", "blocks.*.mlp.w{1,2,3} = muon", "* = adamw"}},
      {"specgd", {"blocks.* = muon(dualizer=polar)", "* = adamw"}},
  };
  return table;
}

}  // namespace

bool glob_match(std::string_view glob, std::string_view name) {
  return match_from(glob, 0, name, 0);
}

const std::vector<std::string>& routing_presets() {
  static const std::vector<std::string> names = {"speedrun", "adamw",         "muon-wout",
                                                 "muon-mlp", "muon-attn-mlp", "specgd"};
  return names;
}

std::vector<std::string> preset_rules(const std::string& preset, const std::string& file) {
  auto it = preset_table().find(preset);
  if (it == preset_table().end()) {
    std::string known;
    for (const auto& n : routing_presets()) known += n + ", ";
    fail(file, "[optim] routing: unknown preset '", preset, "' (expected ", known,
         "none, criterion, or an array of rules)");
  }
  return it->second;
}

RoutingRule parse_rule(const std::string& text, const std::string& source,
                       const std::string& file) {
  auto bad = [&](const std::string& why) -> RoutingRule {
    fail(file, "[optim] ", source, ": ", why, " in \"", text, "\"");
  };
  RoutingRule r;
  r.text = text;
  r.source = source;
  const size_t eq = text.find('=');
  if (eq == std::string::npos) return bad("expected \"glob = adamw\" or \"glob = muon(...)\"");
  r.glob = std::string(trim(std::string_view(text).substr(0, eq)));
  if (std::string why = glob_problem(r.glob); !why.empty()) return bad(why);
  std::string_view rhs = trim(std::string_view(text).substr(eq + 1));
  const size_t paren = rhs.find('(');
  r.optimizer = std::string(trim(rhs.substr(0, paren)));
  if (r.optimizer != "adamw" && r.optimizer != "muon")
    return bad("unknown optimizer '" + r.optimizer + "' (expected adamw or muon)");
  if (paren == std::string_view::npos) return r;
  if (rhs.back() != ')') return bad("options must end with ')'");
  std::string_view opts = rhs.substr(paren + 1, rhs.size() - paren - 2);
  if (trim(opts).empty()) return r;
  const bool muon = r.optimizer == "muon";
  size_t start = 0;
  while (start <= opts.size()) {
    size_t comma = opts.find(',', start);
    if (comma == std::string_view::npos) comma = opts.size();
    std::string_view item = trim(opts.substr(start, comma - start));
    start = comma + 1;
    const size_t e = item.find('=');
    if (e == std::string_view::npos) return bad("option '" + std::string(item) + "' needs =value");
    const std::string key(trim(item.substr(0, e)));
    const std::string value(trim(item.substr(e + 1)));
    auto number = [&]() {
      double v = 0;
      auto res = std::from_chars(value.data(), value.data() + value.size(), v);
      if (res.ec != std::errc() || res.ptr != value.data() + value.size() || !(v >= 0) ||
          !std::isfinite(v))
        bad("option " + key + " = '" + value + "' must be a number >= 0");
      return v;
    };
    auto once = [&](bool set) {
      if (set) bad("option " + key + " given twice");
    };
    if (key == "lr") {
      once(r.lr.has_value());
      r.lr = number();
    } else if (key == "lr_mult") {
      once(r.lr_mult.has_value());
      r.lr_mult = number();
    } else if (key == "wd") {
      once(r.wd.has_value());
      r.wd = number();
    } else if (muon && key == "dualizer") {
      once(r.dualizer.has_value());
      parse_dualizer(value, DualizerSpec{}, file, "[optim] " + source);  // validates
      r.dualizer = value;
    } else if (muon && key == "scale") {
      once(r.scale.has_value());
      if (value != "keller" && value != "spectral" && value != "moonlight" && value != "none")
        bad("option scale = '" + value + "' (expected keller, spectral, moonlight or none)");
      r.scale = value;
    } else {
      bad("unknown option '" + key + "' (" + r.optimizer + " takes " +
          (muon ? "dualizer, lr, lr_mult, scale, wd" : "lr, lr_mult, wd") + ")");
    }
    if (comma == opts.size()) break;
  }
  return r;
}

std::vector<RoutingRule> routing_rules(const OptimConfig& cfg, const std::string& file) {
  std::vector<RoutingRule> rules;
  for (size_t i = 0; i < cfg.rules.size(); ++i)
    rules.push_back(parse_rule(cfg.rules[i], "rules[" + std::to_string(i) + "]", file));
  if (cfg.preset() != "none") {
    const auto preset = preset_rules(cfg.preset(), file);
    for (size_t i = 0; i < preset.size(); ++i) {
      rules.push_back(parse_rule(preset[i], cfg.preset() + "[" + std::to_string(i) + "]", file));
      rules.back().from_preset = true;
    }
  }
  return rules;
}

std::string param_role(const std::string& name, const std::vector<int64_t>& shape) {
  if (name.starts_with("embed.")) return "embed";
  if (name.starts_with("head.")) return "head";
  if (shape.size() < 2) return "scalar";
  return "matrix";
}

double muon_shape_scale(const std::string& rule, int64_t rows, int64_t cols) {
  const double r = double(rows), c = double(cols);
  if (rule == "keller") return std::sqrt(std::max(1.0, r / c));
  if (rule == "spectral") return std::sqrt(r / c);
  if (rule == "moonlight") return 0.2 * std::sqrt(std::max(r, c));
  if (rule == "none") return 1.0;
  fail("optim", "unknown Muon scale rule '", rule,
       "' (expected keller, spectral, moonlight, none)");
}

std::vector<Route> resolve_routing(const std::vector<ParamSpec>& specs, const OptimConfig& cfg,
                                   const std::string& file, std::vector<std::string>* warnings) {
  const std::vector<RoutingRule> rules = routing_rules(cfg, file);
  DualizerSpec ns_default;
  ns_default.coeffs = parse_ns_coeffs(cfg.muon.ns_coeffs, file, "[optim.muon] ns_coeffs");
  ns_default.ns_steps = static_cast<int>(cfg.muon.ns_steps);
  ns_default.ns_eps = cfg.muon.ns_eps;

  std::vector<int64_t> taken(rules.size(), 0), matched(rules.size(), 0),
      skipped_not_2d(rules.size(), 0);
  std::vector<Route> routes;
  for (const ParamSpec& spec : specs) {
    for (size_t i = 0; i < rules.size(); ++i)
      if (glob_match(rules[i].glob, spec.name)) ++matched[i];
    const RoutingRule* chosen = nullptr;
    for (size_t i = 0; i < rules.size() && !chosen; ++i) {
      const RoutingRule& r = rules[i];
      if (!glob_match(r.glob, spec.name)) continue;
      if (r.optimizer == "muon" && spec.shape.size() != 2) {
        ++skipped_not_2d[i];
        continue;
      }
      ++taken[i];
      chosen = &r;
    }
    if (!chosen) {
      std::string how = "routing = \"" + cfg.routing + "\"";
      if (!cfg.rules.empty()) how += " and " + std::to_string(cfg.rules.size()) + " custom rules";
      fail(file, "[optim] no routing rule takes parameter '", spec.name, "' ", spec.shape_str(),
           " (", how, "); add a rule such as \"", spec.name, " = adamw\"");
    }
    Route route;
    route.name = spec.name;
    route.shape = spec.shape;
    route.optimizer = chosen->optimizer;
    route.rule = chosen->source;
    if (chosen->optimizer == "muon") {
      const std::string dualizer = chosen->dualizer.value_or(cfg.muon.dualizer);
      route.dualizer =
          parse_dualizer(dualizer, ns_default, file, "[optim] " + chosen->source).name();
      route.lr = chosen->lr.value_or(cfg.muon.lr);
      route.scale =
          muon_shape_scale(chosen->scale.value_or(cfg.muon.scale), spec.shape[0], spec.shape[1]);
      route.wd = chosen->wd.value_or(cfg.muon.wd);
    } else {
      const std::string role = param_role(spec.name, spec.shape);
      const AdamWConfig& a = cfg.adamw;
      const double role_lr = role == "embed"    ? a.embed_lr
                             : role == "head"   ? a.head_lr
                             : role == "scalar" ? a.scalar_lr
                                                : a.matrix_lr;
      route.lr = chosen->lr.value_or(role_lr);
      route.scale = 1.0;
      route.wd = chosen->wd.value_or(a.wd);
    }
    route.lr *= chosen->lr_mult.value_or(1.0);
    routes.push_back(std::move(route));
  }

  if (warnings) {
    for (size_t i = 0; i < rules.size(); ++i) {
      const RoutingRule& r = rules[i];
      if (r.from_preset || taken[i] > 0) continue;
      std::string why;
      if (matched[i] == 0)
        why = "matches no parameter";
      else if (skipped_not_2d[i] > 0)
        why = "takes no parameter: what it matches is either not a 2-D matrix (muon skips " +
              std::to_string(skipped_not_2d[i]) + ") or routed by an earlier rule";
      else
        why = "takes no parameter: all " + std::to_string(matched[i]) +
              " it matches are routed by earlier rules";
      warnings->push_back(file + ": [optim] " + r.source + " \"" + r.text + "\" " + why);
    }
  }
  return routes;
}

std::string routing_table(const std::vector<Route>& routes) {
  const std::vector<std::string> head = {"name", "shape", "optimizer", "dualizer",
                                         "lr",   "scale", "wd",        "rule"};
  std::vector<std::vector<std::string>> rows;
  for (const Route& r : routes)
    rows.push_back({r.name, shape_str(r.shape, ", ").insert(0, 1, '[').append("]"), r.optimizer,
                    r.dualizer.empty() ? "-" : r.dualizer, fmt_num(r.lr), fmt_num(r.scale),
                    fmt_num(r.wd), r.rule});
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cells.size(); ++c) {
      s += cells[c];
      if (c + 1 < cells.size()) s += std::string(width[c] - cells[c].size() + 2, ' ');
    }
    os << s << "\n";
  };
  line(head);
  for (const auto& row : rows) line(row);

  int64_t n_muon = 0, n_adamw = 0, p_muon = 0, p_adamw = 0;
  for (const Route& r : routes) {
    int64_t count = 1;
    for (int64_t s : r.shape) count *= s;
    (r.optimizer == "muon" ? n_muon : n_adamw) += 1;
    (r.optimizer == "muon" ? p_muon : p_adamw) += count;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "muon: %lld matrices, %.2fM parameters; adamw: %lld tensors, %.2fM parameters\n",
                (long long)n_muon, p_muon / 1e6, (long long)n_adamw, p_adamw / 1e6);
  os << buf;
  return os.str();
}

std::string routing_tsv(const std::vector<Route>& routes) {
  auto exact = [](double v) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, res.ptr);
  };
  std::ostringstream os;
  os << "name\tshape\toptimizer\tdualizer\tlr\tscale\twd\trule\n";
  for (const Route& r : routes)
    os << r.name << "\t" << shape_str(r.shape, "x") << "\t" << r.optimizer << "\t"
       << (r.dualizer.empty() ? "-" : r.dualizer) << "\t" << exact(r.lr) << "\t" << exact(r.scale)
       << "\t" << exact(r.wd) << "\t" << r.rule << "\n";
  return os.str();
}

}  // namespace muongpt
