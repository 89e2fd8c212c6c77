// Routing: which optimizer (and dualizer, lr, shape scale, weight decay) each parameter gets.
// Ordered rules "glob = optimizer[(options)]" are tried in order and the first whose glob matches
// the parameter's name wins: first the config's own `rules`, then the preset's. Globs match whole
// names: `*` any run of characters (dots included), `?` one character, `[abc]` / `[0-9]` / `[!x]`
// one character of a set, `{wq,wk}` one of the alternatives.
//
// A `muon` rule only takes 2-D parameters: a gain or bias its glob matches falls through to the
// next rule, so "blocks.* = muon" means "every matrix inside the blocks".
//
// A parameter no rule takes is an error naming it; a custom rule that takes nothing (its glob
// matches no name, or only parameters an earlier rule took, or only non-matrices for muon) is a
// warning. The resolved table is printed by
// `muongpt model-info --config FILE` and saved with every run (routing.tsv).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/params.h"
#include "optim/config.h"

namespace muongpt {

struct Route {
  std::string name;
  std::vector<int64_t> shape;
  std::string optimizer;  // "adamw" | "muon"
  std::string dualizer;   // canonical DualizerSpec::name(); "" for adamw
  double lr = 0;          // base lr (before the schedule's multiplier), lr_mult included
  double scale = 1;       // Muon's shape scale; 1 for adamw
  double wd = 0;
  std::string rule;  // the rule that routed it: "rules[0]" or "speedrun[1]"
};

// One parsed rule.
struct RoutingRule {
  std::string text;    // as written
  std::string source;  // "rules[2]" or "<preset>[i]"
  bool from_preset = false;
  std::string glob;
  std::string optimizer;  // "adamw" | "muon"
  std::optional<std::string> dualizer, scale;
  std::optional<double> lr, lr_mult, wd;
};

// The presets' names, in the order docs/optim.md lists them.
const std::vector<std::string>& routing_presets();
// A preset's rules (without "none": that has none). Unknown name: Error naming the known ones.
std::vector<std::string> preset_rules(const std::string& preset, const std::string& file);
// Parses one rule; `source` names it in errors ("<file>: [optim] rules[2]: ...").
RoutingRule parse_rule(const std::string& text, const std::string& source, const std::string& file);
// The config's rules followed by its preset's.
std::vector<RoutingRule> routing_rules(const OptimConfig& cfg, const std::string& file);

// Whole-name glob match (see above).
bool glob_match(std::string_view glob, std::string_view name);

// The role of a parameter, which picks AdamW's default lr: "embed" (embed.*), "head" (head.*),
// "scalar" (fewer than 2 dimensions) or "matrix".
std::string param_role(const std::string& name, const std::vector<int64_t>& shape);
// Muon's shape scale for a [rows, cols] matrix under rule `rule` (keller | spectral | moonlight |
// none); throws for an unknown rule name.
double muon_shape_scale(const std::string& rule, int64_t rows, int64_t cols);

// Routes every parameter, in the order of `specs`. Errors (Error(file, ...)): a parameter no
// rule takes, bad rule syntax. Warnings are appended to `warnings` (may be null), one line each:
// "<file>: [optim] rules[1] \"blocks.12.* = adamw\" matches no parameter".
std::vector<Route> resolve_routing(const std::vector<ParamSpec>& specs, const OptimConfig& cfg,
                                   const std::string& file, std::vector<std::string>* warnings);

// Aligned, human-readable table plus a one-line summary per optimizer.
std::string routing_table(const std::vector<Route>& routes);
// Tab-separated, one header line ("name\tshape\toptimizer\tdualizer\tlr\tscale\twd\trule"),
// shapes as "768x3072"; what runs/<name>/routing.tsv holds.
std::string routing_tsv(const std::vector<Route>& routes);

}  // namespace muongpt
