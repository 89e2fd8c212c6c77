// The [optim], [optim.adamw] and [optim.muon] sections of a run config: which optimizer each
// parameter gets (routing) and the hyperparameters of both optimizers. Every key, its default and
// the reasoning behind the defaults are in docs/optim.md.
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>
#include <vector>

namespace muongpt {

// AdamW (decoupled decay, bias correction). The base lr of a parameter routed to AdamW depends on
// its role: the embedding table, the head, 1-D parameters (gains) and any other matrix.
struct AdamWConfig {
  double beta1 = 0.8;
  double beta2 = 0.95;
  double eps = 1e-10;
  double wd = 0.0;  // decoupled: p ← p·(1 − lr·wd)
  double embed_lr = 0.6;
  double head_lr = 0.008;
  double scalar_lr = 0.04;
  double matrix_lr = 0.0018;  // hidden matrices routed to AdamW (ablations)

  bool operator==(const AdamWConfig&) const = default;
};

// Muon: momentum, then a dualizer, then W ← W·(1 − lr·wd) − lr·scale(W)·O.
struct MuonConfig {
  double lr = 0.05;
  double momentum = 0.95;        // μ after the warmup
  double momentum_start = 0.85;  // μ at step 0, ramped linearly to `momentum`
  int64_t momentum_warmup = 300;
  std::string momentum_kind = "ema";  // "ema": buf ← μ·buf + (1−μ)·G; "classic": buf ← μ·buf + G
  bool nesterov = true;
  std::string dualizer = "ns";       // see parse_dualizer() in optim/dualizer.h
  std::string ns_coeffs = "jordan";  // for dualizer = "ns": jordan | cubic | polar-express
  int64_t ns_steps = 5;              // for dualizer = "ns"
  double ns_eps = 1e-7;              // X ← X / (‖X‖_F + ns_eps) before the iteration
  std::string scale = "keller";      // keller | spectral | moonlight | none
  double wd = 0.0;

  bool operator==(const MuonConfig&) const = default;
};

struct OptimConfig {
  // A preset (speedrun, adamw, muon-wout, muon-mlp, muon-attn-mlp, specgd) or "none". The preset's
  // rules are tried after `rules`, so a few custom rules override a preset for some parameters.
  std::string routing = "speedrun";
  // Custom rules, tried first, in order: "glob = adamw", "glob = muon", or with per-rule options
  // "glob = muon(dualizer=polar, lr_mult=0.5, scale=spectral, wd=0.01)" (lr, lr_mult, wd for
  // adamw; also dualizer and scale for muon).
  std::vector<std::string> rules;
  AdamWConfig adamw;
  MuonConfig muon;

  // Throws Error(file, "[optim...] key: problem") on the first impossible value, including rules
  // that do not parse and dualizer names that do not exist.
  void validate(const std::string& file) const;
  // [optim], [optim.adamw] and [optim.muon] with every key spelled out; reading it back gives an
  // equal config.
  std::string to_toml() const;

  bool operator==(const OptimConfig&) const = default;
};

// Reads [optim], [optim.adamw] and [optim.muon] (absent sections take the defaults); unknown
// keys and wrong types are errors naming the file, section and key. `routing` may also be given
// as an array of rules (DESIGN.md's short form), which means rules = that array, routing = "none".
OptimConfig optim_config_from_toml(const toml::table& root, const std::string& file);

// Formatting helpers of the optim TOML writers: a number that stays a TOML float (shortest form
// that reads back to the same double; inf as `inf`), and a basic TOML string with escapes.
std::string optim_toml_float(double v);
std::string optim_toml_string(const std::string& s);

}  // namespace muongpt
