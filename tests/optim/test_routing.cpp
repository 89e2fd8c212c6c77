// Routing: every preset on the real parameter table, custom rules with options, the glob
// language, and the error (unrouted parameter, bad rule) and warning (rule takes nothing) cases.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/config.h"
#include "model/params.h"
#include "optim/optim_testing.h"
#include "optim/routing.h"
#include "testing/errors.h"
#include "testing/model_util.h"

namespace muongpt {
namespace {

using testing::optim_from_text;

ModelConfig tiny(bool gains) {
  return gains ? testing::tiny_gains_config() : testing::tiny_config();
}

std::map<std::string, Route> by_name(const std::vector<Route>& routes) {
  std::map<std::string, Route> m;
  for (const Route& r : routes) m[r.name] = r;
  return m;
}

using testing::error_of;

// What each preset should do to one parameter of the base model.
std::string expected_optimizer(const std::string& preset, const std::string& name, size_t ndim) {
  const bool in_block = name.starts_with("blocks.");
  const bool attn = name.find(".attn.w") != std::string::npos;
  const bool w1 = name.ends_with(".mlp.w1"), w2 = name.ends_with(".mlp.w2");
  bool muon = false;
  if (preset == "speedrun" || preset == "specgd") muon = in_block && ndim == 2;
  if (preset == "muon-wout") muon = w2;
  if (preset == "muon-mlp") muon = w1 || w2;
  if (preset == "muon-attn-mlp") muon = attn || w1 || w2;
  return muon ? "muon" : "adamw";
}

TEST(Routing, EveryPresetOnTheBaseModel) {
  for (bool gains : {false, true}) {
    const auto specs = param_specs(tiny(gains));
    for (const std::string& preset : routing_presets()) {
      OptimConfig cfg;
      cfg.routing = preset;
      std::vector<std::string> warnings;
      const auto routes = resolve_routing(specs, cfg, "test.toml", &warnings);
      EXPECT_TRUE(warnings.empty()) << preset << ": " << warnings.front();
      ASSERT_EQ(routes.size(), specs.size());
      int muon = 0;
      for (size_t i = 0; i < specs.size(); ++i) {
        const Route& r = routes[i];
        const ParamSpec& s = specs[i];
        ASSERT_EQ(r.name, s.name);
        EXPECT_EQ(r.shape, s.shape);
        EXPECT_EQ(r.optimizer, expected_optimizer(preset, s.name, s.shape.size()))
            << preset << " " << s.name;
        if (r.optimizer == "muon") {
          ++muon;
          EXPECT_EQ(r.dualizer, preset == "specgd" ? "polar" : "ns:jordan:5") << preset;
          EXPECT_EQ(r.lr, 0.05);
          EXPECT_EQ(r.scale, s.name.ends_with("mlp.w1") ? 2.0 : 1.0) << s.name;  // keller
          EXPECT_EQ(r.wd, 0.0);
        } else {
          EXPECT_EQ(r.dualizer, "");
          EXPECT_EQ(r.scale, 1.0);
          const double lr = s.name == "embed.weight"  ? 0.6
                            : s.name == "head.weight" ? 0.008
                            : s.shape.size() == 1     ? 0.04
                                                      : 0.0018;
          EXPECT_EQ(r.lr, lr) << preset << " " << s.name;
        }
        EXPECT_TRUE(r.rule.starts_with(preset + "[")) << r.rule;
      }
      const int expect_muon = preset == "adamw"       ? 0
                              : preset == "muon-wout" ? 2
                              : preset == "muon-mlp"  ? 4
                                                      : 12;
      EXPECT_EQ(muon, expect_muon) << preset;
    }
  }
}

// The gated MLP's w3 is an MLP input projection like w1: every preset that takes w1 takes w3 (the
// speedrun and specgd by "blocks.*", muon-mlp and muon-attn-mlp by "mlp.w{1,2,3}"); muon-wout
// stays w2 only. w3 [F, d] has w1's keller scale √(F/d) (F = 192, d = 64: √3).
TEST(Routing, EveryPresetTreatsW3LikeW1) {
  const auto specs = param_specs(testing::tiny_swiglu_config());
  ASSERT_GE(find_param(specs, "blocks.1.mlp.w3"), 0);
  for (const std::string& preset : routing_presets()) {
    OptimConfig cfg;
    cfg.routing = preset;
    std::vector<std::string> warnings;
    const auto r = by_name(resolve_routing(specs, cfg, "test.toml", &warnings));
    EXPECT_TRUE(warnings.empty()) << preset;
    for (int l = 0; l < 2; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".mlp.";
      const Route &w1 = r.at(b + "w1"), &w3 = r.at(b + "w3"), &w2 = r.at(b + "w2");
      EXPECT_EQ(w3.optimizer, w1.optimizer) << preset << " " << b;
      EXPECT_EQ(w3.optimizer, preset == "adamw" || preset == "muon-wout" ? "adamw" : "muon")
          << preset;
      EXPECT_EQ(w2.optimizer, preset == "adamw" ? "adamw" : "muon") << preset;
      EXPECT_EQ(w3.dualizer, w1.dualizer) << preset;
      EXPECT_EQ(w3.lr, w1.lr) << preset;
      EXPECT_EQ(w3.wd, w1.wd) << preset;
      EXPECT_EQ(w3.scale, w1.scale) << preset;
      if (w3.optimizer == "muon") EXPECT_DOUBLE_EQ(w3.scale, std::sqrt(3.0)) << preset;
    }
  }
  EXPECT_TRUE(glob_match("blocks.*.mlp.w{1,2,3}", "blocks.0.mlp.w3"));
  EXPECT_FALSE(glob_match("blocks.*.mlp.w2", "blocks.0.mlp.w3"));
  EXPECT_FALSE(glob_match("blocks.*.mlp.w{1,2,3}", "blocks.0.mlp_norm.weight"));
}

TEST(Routing, SpeedrunOnThe124MModel) {
  OptimConfig cfg;
  const auto routes = resolve_routing(param_specs(ModelConfig{}), cfg, "x", nullptr);
  int muon = 0;
  for (const Route& r : routes) muon += r.optimizer == "muon";
  EXPECT_EQ(muon, 72);  // 12 blocks × (wq, wk, wv, wo, w1, w2): Q, K, V, O are separate matrices
  const std::string table = routing_table(routes);
  EXPECT_NE(table.find("muon: 72 matrices, 84.93M parameters; adamw: 2 tensors, 77.27M"),
            std::string::npos)
      << table;
}

TEST(Routing, CustomRulesComeFirstAndCarryOptions) {
  const OptimConfig cfg = optim_from_text(
      "[optim]\nrouting = \"speedrun\"\nrules = [\"blocks.0.* = adamw\", "
      "\"blocks.1.mlp.w1 = muon(dualizer=schatten-p:8, lr=0.02, scale=spectral, wd=0.1)\", "
      "\"blocks.1.attn.w{q,k} = muon(lr_mult=0.5)\", \"head.* = adamw(lr=0.3, wd=0.01)\"]\n");
  std::vector<std::string> warnings;
  auto r = by_name(resolve_routing(param_specs(tiny(true)), cfg, "test.toml", &warnings));
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(r["blocks.0.attn.wq"].optimizer, "adamw");
  EXPECT_EQ(r["blocks.0.attn.wq"].lr, 0.0018);  // a matrix on AdamW: matrix_lr
  EXPECT_EQ(r["blocks.0.attn.wq"].rule, "rules[0]");
  EXPECT_EQ(r["blocks.0.attn_norm.weight"].lr, 0.04);
  const Route& w1 = r["blocks.1.mlp.w1"];
  EXPECT_EQ(w1.optimizer, "muon");
  EXPECT_EQ(w1.dualizer, "schatten-p:8");
  EXPECT_EQ(w1.lr, 0.02);
  EXPECT_EQ(w1.scale, 2.0);  // spectral: √(256/64)
  EXPECT_EQ(w1.wd, 0.1);
  EXPECT_EQ(w1.rule, "rules[1]");
  EXPECT_EQ(r["blocks.1.attn.wq"].lr, 0.025);
  EXPECT_EQ(r["blocks.1.attn.wk"].lr, 0.025);
  EXPECT_EQ(r["blocks.1.attn.wk"].rule, "rules[2]");
  EXPECT_EQ(r["blocks.1.attn.wv"].lr, 0.05);
  EXPECT_EQ(r["blocks.1.attn.wv"].rule, "speedrun[0]");
  EXPECT_EQ(r["blocks.1.mlp.w2"].optimizer, "muon");
  EXPECT_EQ(r["head.weight"].lr, 0.3);
  EXPECT_EQ(r["head.weight"].wd, 0.01);
  EXPECT_EQ(r["blocks.1.mlp_norm.weight"].optimizer, "adamw");
  EXPECT_EQ(r["final_norm.weight"].rule, "speedrun[1]");
}

TEST(Routing, ConfigDefaultsFlowIntoRoutes) {
  const OptimConfig cfg = optim_from_text(
      "[optim]\nrouting = \"muon-mlp\"\n[optim.adamw]\nembed_lr = 0.3\nwd = 0.02\n"
      "[optim.muon]\nlr = 0.03\nscale = \"moonlight\"\ndualizer = \"ns\"\n"
      "ns_coeffs = \"polar-express\"\nns_steps = 7\nwd = 0.1\n");
  auto r = by_name(resolve_routing(param_specs(tiny(false)), cfg, "t", nullptr));
  EXPECT_EQ(r["embed.weight"].lr, 0.3);
  EXPECT_EQ(r["embed.weight"].wd, 0.02);
  EXPECT_EQ(r["blocks.0.mlp.w2"].dualizer, "ns:polar-express:7");
  EXPECT_EQ(r["blocks.0.mlp.w2"].lr, 0.03);
  EXPECT_EQ(r["blocks.0.mlp.w2"].wd, 0.1);
  EXPECT_DOUBLE_EQ(r["blocks.0.mlp.w2"].scale, 0.2 * 16.0);  // 0.2·√max(64, 256)
}

TEST(Routing, UnroutedParameterIsAnErrorNamingIt) {
  const auto specs = param_specs(tiny(true));
  OptimConfig cfg;
  cfg.routing = "none";
  cfg.rules = {"blocks.* = muon", "embed.* = adamw", "head.* = adamw"};
  // muon skips the 1-D gains, and nothing else takes them.
  EXPECT_EQ(error_of([&] { resolve_routing(specs, cfg, "x.toml", nullptr); }),
            "x.toml: [optim] no routing rule takes parameter 'blocks.0.attn_norm.weight' [64] "
            "(routing = \"none\" and 3 custom rules); add a rule such as "
            "\"blocks.0.attn_norm.weight = adamw\"");
  cfg.rules = {"blocks.* = adamw"};
  EXPECT_NE(error_of([&] {
              resolve_routing(specs, cfg, "x.toml", nullptr);
            }).find("no routing rule takes parameter 'embed.weight' [128, 64]"),
            std::string::npos);
}

TEST(Routing, RulesThatTakeNothingAreWarnings) {
  const auto specs = param_specs(tiny(true));
  OptimConfig cfg;
  cfg.rules = {"blocks.9.* = adamw", "blocks.* = adamw", "blocks.0.mlp.w1 = muon",
               "*norm.weight = muon", "embed.weight = adamw"};
  std::vector<std::string> warnings;
  const auto routes = resolve_routing(specs, cfg, "x.toml", &warnings);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_EQ(warnings[0], "x.toml: [optim] rules[0] \"blocks.9.* = adamw\" matches no parameter");
  EXPECT_EQ(warnings[1],
            "x.toml: [optim] rules[2] \"blocks.0.mlp.w1 = muon\" takes no parameter: all 1 it "
            "matches are routed by earlier rules");
  EXPECT_NE(warnings[2].find("rules[3] \"*norm.weight = muon\" takes no parameter: what it "
                             "matches is either not a 2-D matrix (muon skips 1)"),
            std::string::npos)
      << warnings[2];
  // The routing still resolves: embed by rules[4], the gain the earlier rules skipped by the
  // preset, final_norm by the preset's last rule.
  auto r = by_name(routes);
  EXPECT_EQ(r["embed.weight"].rule, "rules[4]");
  EXPECT_EQ(r["final_norm.weight"].rule, "speedrun[1]");
  EXPECT_EQ(r["blocks.0.mlp.w1"].optimizer, "adamw");
}

TEST(Routing, BadRulesAreOneLineErrors) {
  struct Case {
    std::string rule, expect;
  };
  for (const Case& c : {
           Case{"blocks.*",
                "t.toml: [optim] rules[0]: expected \"glob = adamw\" or \"glob = "
                "muon(...)\" in \"blocks.*\""},
           Case{"* = sgd", "rules[0]: unknown optimizer 'sgd' (expected adamw or muon)"},
           Case{"* = adamw(dualizer=polar)",
                "rules[0]: unknown option 'dualizer' (adamw takes lr, lr_mult, wd)"},
           Case{"* = muon(dualizer=nope)", "t.toml: [optim] rules[0]: unknown dualizer 'nope'"},
           Case{"* = muon(scale=big)", "option scale = 'big' (expected keller"},
           Case{"* = muon(lr=-1)", "option lr = '-1' must be a number >= 0"},
           Case{"* = muon(lr=1, lr=2)", "option lr given twice"},
           Case{"* = muon(lr)", "option 'lr' needs =value"},
           Case{"* = muon(lr=1", "options must end with ')'"},
           Case{"blocks.{0 = adamw", "unclosed '{'"},
           Case{"blocks.[0 = adamw", "unclosed '['"},
           Case{"a b = adamw", "a glob has no spaces"},
           Case{" = adamw", "empty glob"},
       }) {
    const std::string text = "[optim]\nrules = [\"" + c.rule + "\"]\n";
    const std::string err =
        error_of([&] { optim_config_from_toml(parse_toml_string(text, "t.toml"), "t.toml"); });
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.rule << "\n" << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
  EXPECT_NE(error_of([] { optim_from_text("[optim]\nrouting = \"fast\"\n"); })
                .find("test.toml: [optim] routing: unknown preset 'fast' (expected speedrun, "
                      "adamw, muon-wout, muon-mlp, muon-attn-mlp, specgd, none"),
            std::string::npos);
}

TEST(Routing, GlobLanguage) {
  EXPECT_TRUE(glob_match("blocks.*", "blocks.0.attn.wq"));
  EXPECT_TRUE(glob_match("*", "embed.weight"));
  EXPECT_TRUE(glob_match("embed.weight", "embed.weight"));
  EXPECT_FALSE(glob_match("attn.wq", "blocks.0.attn.wq"));  // whole names only
  EXPECT_FALSE(glob_match("blocks.*", "embed.weight"));
  EXPECT_TRUE(glob_match("blocks.?.attn.wq", "blocks.1.attn.wq"));
  EXPECT_FALSE(glob_match("blocks.?.attn.wq", "blocks.10.attn.wq"));
  EXPECT_TRUE(glob_match("blocks.1*", "blocks.10.mlp.w1"));
  EXPECT_TRUE(glob_match("blocks.[0-4].*", "blocks.3.mlp.w1"));
  EXPECT_FALSE(glob_match("blocks.[0-4].*", "blocks.5.mlp.w1"));
  EXPECT_TRUE(glob_match("blocks.[!0].*", "blocks.5.mlp.w1"));
  EXPECT_FALSE(glob_match("blocks.[!0].*", "blocks.0.mlp.w1"));
  EXPECT_TRUE(glob_match("*.attn.w{q,k,v}", "blocks.2.attn.wk"));
  EXPECT_FALSE(glob_match("*.attn.w{q,k,v}", "blocks.2.attn.wo"));
  EXPECT_TRUE(glob_match("{embed,head}.weight", "head.weight"));
  EXPECT_TRUE(glob_match("{a,{b,c}}x", "cx"));
  EXPECT_FALSE(glob_match("{a,{b,c}}x", "dx"));
  EXPECT_TRUE(glob_match("*norm.weight", "blocks.0.attn_norm.weight"));
  EXPECT_TRUE(glob_match("**.w2", "blocks.0.mlp.w2"));
}

TEST(Routing, RolesAndShapeScales) {
  EXPECT_EQ(param_role("embed.weight", {128, 64}), "embed");
  EXPECT_EQ(param_role("head.weight", {128, 64}), "head");
  EXPECT_EQ(param_role("final_norm.weight", {64}), "scalar");
  EXPECT_EQ(param_role("blocks.0.mlp.w1", {256, 64}), "matrix");
  EXPECT_EQ(muon_shape_scale("keller", 3072, 768), 2.0);
  EXPECT_EQ(muon_shape_scale("keller", 768, 3072), 1.0);
  EXPECT_EQ(muon_shape_scale("spectral", 768, 3072), 0.5);
  EXPECT_DOUBLE_EQ(muon_shape_scale("moonlight", 768, 3072), 0.2 * std::sqrt(3072.0));
  EXPECT_EQ(muon_shape_scale("none", 768, 3072), 1.0);
  EXPECT_NE(error_of([] { muon_shape_scale("huge", 1, 1); }).find("unknown Muon scale rule"),
            std::string::npos);
}

TEST(Routing, TableAndTsv) {
  OptimConfig cfg;
  const auto routes = resolve_routing(param_specs(tiny(false)), cfg, "t", nullptr);
  const std::string tsv = routing_tsv(routes);
  EXPECT_EQ(tsv.rfind("name\tshape\toptimizer\tdualizer\tlr\tscale\twd\trule\n", 0), 0u);
  EXPECT_NE(tsv.find("\nblocks.0.mlp.w1\t256x64\tmuon\tns:jordan:5\t0.05\t2\t0\tspeedrun[0]\n"),
            std::string::npos)
      << tsv;
  EXPECT_NE(tsv.find("\nembed.weight\t128x64\tadamw\t-\t0.6\t1\t0\tspeedrun[1]\n"),
            std::string::npos);
  int lines = 0;
  for (char ch : tsv) lines += ch == '\n';
  EXPECT_EQ(lines, int(routes.size()) + 1);

  const std::string table = routing_table(routes);
  // Aligned: the optimizer column starts at the same offset on every row.
  std::vector<std::string> rows;
  for (size_t a = 0, b; (b = table.find('\n', a)) != std::string::npos; a = b + 1)
    rows.push_back(table.substr(a, b - a));
  ASSERT_EQ(rows.size(), routes.size() + 2);  // header, rows, summary
  const size_t col = rows[0].find("optimizer");
  for (size_t i = 1; i + 1 < rows.size(); ++i) {
    const std::string cell = rows[i].substr(col, 5);
    EXPECT_TRUE(cell == "muon " || cell == "adamw") << rows[i];
  }
  EXPECT_EQ(rows.back(), "muon: 12 matrices, 0.10M parameters; adamw: 2 tensors, 0.02M parameters");
}

}  // namespace
}  // namespace muongpt
