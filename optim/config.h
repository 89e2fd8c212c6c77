// The [optim], [optim.adamw] and [optim.muon] sections of a run config: which optimizer each
// parameter gets (routing) and the hyperparameters of both optimizers.
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config_table.h"

namespace muongpt {

// The rows below are KEY(type, name, default, check, "one-line doc") (core/config_table.h): each
// declares a member and drives parsing, the per-key checks, the resolved config.toml and the docs
// test. docs/config.md describes every key, docs/optim.md the reasoning behind the defaults.

// [optim]: which optimizer each parameter gets. The preset's rules are tried after `rules`, so a
// few custom rules override a preset for some parameters. A rule is "glob = adamw", "glob = muon",
// or with per-rule options "glob = muon(dualizer=polar, lr_mult=0.5, scale=spectral, wd=0.01)"
// (lr, lr_mult, wd for adamw; also dualizer and scale for muon).
#define MUONGPT_OPTIM_KEYS(KEY)                                                                 \
  KEY(std::string, routing, "speedrun", {},                                                     \
      "preset: speedrun, adamw, muon-wout, muon-mlp, muon-attn-mlp, specgd, criterion or none") \
  KEY(std::vector<std::string>, rules, {}, {}, "custom rules, tried before the preset's")

// [optim.adamw]: AdamW (decoupled decay, bias correction). The base lr of a parameter routed to
// AdamW depends on its role: the embedding table, the head, 1-D parameters (gains), other matrices.
#define MUONGPT_ADAMW_KEYS(KEY)                                                          \
  KEY(double, beta1, 0.8, in_unit_interval(), "first-moment decay")                      \
  KEY(double, beta2, 0.95, in_unit_interval(), "second-moment decay")                    \
  KEY(double, eps, 1e-10, positive(), "added to sqrt(v)")                                \
  KEY(double, wd, 0.0, non_negative(), "decoupled weight decay: p <- p*(1 - lr*wd)")     \
  KEY(double, embed_lr, 0.6, non_negative(), "base lr of embed.*")                       \
  KEY(double, head_lr, 0.008, non_negative(), "base lr of head.*")                       \
  KEY(double, scalar_lr, 0.04, non_negative(), "base lr of 1-D parameters (norm gains)") \
  KEY(double, matrix_lr, 0.0018, non_negative(), "base lr of other matrices routed to AdamW")

// [optim.muon]: momentum, then a dualizer, then W <- W*(1 - lr*wd) - lr*scale(W)*O.
#define MUONGPT_MUON_KEYS(KEY)                                                              \
  KEY(double, lr, 0.05, non_negative(), "base lr")                                          \
  KEY(double, momentum, 0.95, in_unit_interval(), "mu after the warmup")                    \
  KEY(double, momentum_start, 0.85, in_unit_interval(), "mu at step 0, ramped to momentum") \
  KEY(int64_t, momentum_warmup, 300, at_least(0), "steps of the momentum ramp")             \
  KEY(std::string, momentum_kind, "ema", one_of({"ema", "classic"}),                        \
      "ema: buf <- mu*buf + (1-mu)*G; classic: buf <- mu*buf + G")                          \
  KEY(bool, nesterov, true, {}, "Nesterov look-ahead")                                      \
  KEY(std::string, dualizer, "ns", {}, "see parse_dualizer() in optim/dualizer.h")          \
  KEY(std::string, ns_coeffs, "jordan", {}, "for ns: jordan, cubic or polar-express")       \
  KEY(int64_t, ns_steps, 5, in_range(1, 100), "for ns: Newton-Schulz steps")                \
  KEY(double, ns_eps, 1e-7, positive(), "X <- X / (|X|_F + ns_eps) before the iteration")   \
  KEY(std::string, scale, "keller", {}, "shape scale: keller, spectral, moonlight or none") \
  KEY(double, wd, 0.0, non_negative(), "decoupled weight decay")

struct AdamWConfig {
  MUONGPT_ADAMW_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const AdamWConfig&) const = default;
};

struct MuonConfig {
  MUONGPT_MUON_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const MuonConfig&) const = default;
};

// [optim.criterion]: routing = "criterion" lets the seed paper's criterion decide. During a probe
// window the run trains with `base` and measures nr(G)/st(A) at every step; then every candidate
// whose mean ratio reaches `threshold` moves to Muon (docs/optim.md, "Routing by the criterion").
#define MUONGPT_CRITERION_KEYS(KEY)                                                         \
  KEY(std::string, base, "adamw", {}, "the routing of the probe window: a preset")          \
  KEY(int64_t, probe_steps, 50, positive(), "steps of the probe window; telemetry at each") \
  KEY(std::vector<std::string>, candidates, std::vector<std::string>{"blocks.*"}, {},       \
      "globs of the 2-D weights it may move to Muon")                                       \
  KEY(double, threshold, 1.0, positive(), "a candidate moves when its mean nr(G)/st(A) >= this")

struct CriterionConfig {
  MUONGPT_CRITERION_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const CriterionConfig&) const = default;
};

struct OptimConfig {
  MUONGPT_OPTIM_KEYS(MUONGPT_CONFIG_MEMBER)
  AdamWConfig adamw;
  MuonConfig muon;
  CriterionConfig criterion;

  // The preset whose rules follow the custom ones: `routing`, or for routing = "criterion" the
  // probe window's base.
  const std::string& preset() const { return routing == "criterion" ? criterion.base : routing; }

  // Throws Error(file, "[optim...] key: problem") on the first impossible value, including rules
  // that do not parse and dualizer names that do not exist.
  void validate(const std::string& file) const;
  // [optim], [optim.adamw] and [optim.muon] with every key spelled out, one "key = value" a line;
  // reading it back gives an equal config.
  std::string to_toml() const;

  bool operator==(const OptimConfig&) const = default;
};

// The keys of [optim], [optim.adamw] and [optim.muon] as tables.
const ConfigTable<OptimConfig>& optim_config_keys();
const ConfigTable<AdamWConfig>& adamw_config_keys();
const ConfigTable<MuonConfig>& muon_config_keys();
const ConfigTable<CriterionConfig>& criterion_config_keys();

// Reads [optim], [optim.adamw] and [optim.muon] (absent sections take the defaults); unknown
// keys and wrong types are errors naming the file, section and key. `routing` may also be given
// as an array of rules (DESIGN.md's short form), which means rules = that array, routing = "none".
OptimConfig optim_config_from_toml(const toml::table& root, const std::string& file);

}  // namespace muongpt
