// The [optim], [optim.adamw], [optim.muon] and [schedule] sections: defaults, round trips through
// to_toml(), and one clear error per bad key; the schedules' values.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/error.h"
#include "core/toml_reader.h"
#include "optim/config.h"
#include "optim/optim_testing.h"
#include "optim/schedule.h"
#include "testing/errors.h"

namespace muongpt {
namespace {

using testing::optim_from_text;

using testing::error_of;

TEST(OptimConfig, DefaultsAreTheSpeedrunOnes) {
  const OptimConfig c = optim_from_text("");
  EXPECT_EQ(c, OptimConfig{});
  EXPECT_EQ(c.routing, "speedrun");
  EXPECT_TRUE(c.rules.empty());
  EXPECT_EQ(c.adamw.beta1, 0.8);
  EXPECT_EQ(c.adamw.beta2, 0.95);
  EXPECT_EQ(c.adamw.eps, 1e-10);
  EXPECT_EQ(c.adamw.embed_lr, 0.6);
  EXPECT_EQ(c.adamw.head_lr, 0.008);
  EXPECT_EQ(c.adamw.scalar_lr, 0.04);
  EXPECT_EQ(c.muon.lr, 0.05);
  EXPECT_EQ(c.muon.momentum, 0.95);
  EXPECT_EQ(c.muon.momentum_start, 0.85);
  EXPECT_EQ(c.muon.momentum_warmup, 300);
  EXPECT_EQ(c.muon.momentum_kind, "ema");
  EXPECT_TRUE(c.muon.nesterov);
  EXPECT_EQ(c.muon.dualizer, "ns");
  EXPECT_EQ(c.muon.ns_coeffs, "jordan");
  EXPECT_EQ(c.muon.ns_steps, 5);
  EXPECT_EQ(c.muon.scale, "keller");
  EXPECT_EQ(c.muon.wd, 0.0);
}

TEST(OptimConfig, ToTomlRoundTrips) {
  OptimConfig c;
  c.routing = "muon-mlp";
  c.rules = {"blocks.0.* = adamw(lr=0.001)", "a\"b = muon(dualizer=schatten-p:2.5)"};
  c.adamw.beta1 = 0.9;
  c.adamw.eps = 1e-8;
  c.adamw.matrix_lr = 3e-4;
  c.muon.lr = 0.02;
  c.muon.momentum_kind = "classic";
  c.muon.nesterov = false;
  c.muon.dualizer = "polar";
  c.muon.ns_steps = 6;
  c.muon.scale = "moonlight";
  c.muon.wd = 0.1;
  const std::string text = c.to_toml();
  EXPECT_EQ(optim_from_text(text), c) << text;
  EXPECT_EQ(optim_from_text(OptimConfig{}.to_toml()), OptimConfig{});
  // Every key is spelled out.
  for (const char* key : {"routing = ", "rules = ", "beta1 = ", "beta2 = ", "eps = ", "embed_lr = ",
                          "head_lr = ", "scalar_lr = ", "matrix_lr = ", "momentum_start = ",
                          "momentum_warmup = ", "momentum_kind = ", "nesterov = ", "dualizer = ",
                          "ns_coeffs = ", "ns_steps = ", "ns_eps = ", "scale = "})
    EXPECT_NE(text.find(key), std::string::npos) << key;
  EXPECT_NE(text.find("eps = 1e-08\n"), std::string::npos) << text;
}

TEST(OptimConfig, RoutingMayBeAnArrayOfRules) {
  const OptimConfig c =
      optim_from_text("[optim]\nrouting = [\"blocks.* = muon\", \"* = adamw\"]\n");
  EXPECT_EQ(c.routing, "none");
  ASSERT_EQ(c.rules.size(), 2u);
  EXPECT_EQ(c.rules[1], "* = adamw");
}

TEST(OptimConfig, BadKeysAreOneLineErrorsNamingTheKey) {
  struct Case {
    std::string text, expect;
  };
  for (const Case& c : {
           Case{"[optim]\nrule = []\n", "test.toml: [optim] unknown key 'rule'"},
           Case{"[optim.muon]\nnesterov_on = true\n",
                "test.toml: [optim.muon] unknown key "
                "'nesterov_on'"},
           Case{"[optim.adamw]\nbeta = 0.9\n", "[optim.adamw] unknown key 'beta'"},
           Case{"[optim.adamw]\nbeta1 = 1.0\n", "[optim.adamw] beta1 = 1: must be in [0, 1)"},
           Case{"[optim.adamw]\neps = 0\n", "[optim.adamw] eps = 0: must be positive"},
           Case{"[optim.adamw]\nhead_lr = -0.1\n", "[optim.adamw] head_lr = -0.1: must be >= 0"},
           Case{"[optim.muon]\nlr = \"fast\"\n",
                "[optim.muon] lr: expected a number, found a "
                "string"},
           Case{"[optim.muon]\nmomentum = 1.5\n", "[optim.muon] momentum = 1.5: must be in [0, 1)"},
           Case{"[optim.muon]\nmomentum_kind = \"heavy\"\n",
                "[optim.muon] momentum_kind = \"heavy\": expected \"ema\" or \"classic\""},
           Case{"[optim.muon]\ndualizer = \"svd\"\n",
                "test.toml: [optim.muon] dualizer: unknown dualizer 'svd'"},
           Case{"[optim.muon]\nns_coeffs = \"fast\"\n",
                "[optim.muon] ns_coeffs: unknown Newton-Schulz coefficients 'fast'"},
           Case{"[optim.muon]\nns_steps = 0\n", "[optim.muon] ns_steps = 0: must be in 1..100"},
           Case{"[optim.muon]\nscale = \"big\"\n",
                "[optim.muon] scale = \"big\": expected "
                "\"keller\""},
           Case{"[optim.muon]\nmomentum_warmup = -1\n", "momentum_warmup = -1: must be >= 0"},
           Case{"[optim]\nrouting = 3\n",
                "[optim] routing: expected a preset name or an array of rules"},
           Case{"[optim]\nrouting = [\"* = adamw\"]\nrules = [\"* = muon\"]\n",
                "[optim] rules: give the rules either as `routing = [...]` or as `rules = [...]`"},
           Case{"[optim]\nrouting = \"none\"\n", "[optim] routing = \"none\" needs rules"},
           Case{"[optim]\nrules = [1]\n", "[optim] rules: element 0 is not a string"},
           Case{"optim = 3\n", "test.toml: [optim] must be a table"},
       }) {
    const std::string err = error_of([&] { optim_from_text(c.text); });
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.text << "\n" << err;
    EXPECT_EQ(err.find('\n'), std::string::npos) << err;
  }
}

TEST(Schedule, SpeedrunDefaultIsConstantThenLinearCooldown) {
  const ScheduleConfig s;
  EXPECT_EQ(s.warmup, 0);
  EXPECT_EQ(s.cooldown_frac, 0.4);
  EXPECT_EQ(s.final_ratio, 0.1);
  EXPECT_EQ(s.kind, "linear");
  EXPECT_EQ(lr_multiplier(s, 0, 100), 1.0);
  EXPECT_EQ(lr_multiplier(s, 59, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 60, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 80, 100), 0.55);
  EXPECT_NEAR(lr_multiplier(s, 99, 100), 1.0 - 0.9 * 39.0 / 40.0, 1e-12);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 100, 100), 0.1);
  for (int64_t t = 61; t <= 100; ++t)
    EXPECT_LT(lr_multiplier(s, t, 100), lr_multiplier(s, t - 1, 100));
}

TEST(Schedule, WarmupAndCosine) {
  ScheduleConfig s;
  s.warmup = 10;
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 0, 100), 0.1);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 4, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 9, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 10, 100), 1.0);
  s.kind = "cosine";
  s.cooldown_frac = 1.0;  // warmup, then cosine over the rest: the classic schedule
  s.final_ratio = 0.0;
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 60, 110), 0.5);
  EXPECT_NEAR(lr_multiplier(s, 110, 110), 0.0, 1e-15);
  s.cooldown_frac = 0.5;  // constant, then a cosine cooldown over the last half to 0.2
  s.final_ratio = 0.2;
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 50, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 75, 100), 0.6);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 100, 100), 0.2);
  s.cooldown_frac = 0.0;
  EXPECT_EQ(lr_multiplier(s, 99, 100), 1.0);
}

TEST(Schedule, MuonMomentumWarmup) {
  MuonConfig m;
  EXPECT_DOUBLE_EQ(muon_momentum(m, 0), 0.85);
  EXPECT_DOUBLE_EQ(muon_momentum(m, 150), 0.90);
  EXPECT_DOUBLE_EQ(muon_momentum(m, 300), 0.95);
  EXPECT_DOUBLE_EQ(muon_momentum(m, 5000), 0.95);
  m.momentum_warmup = 0;
  EXPECT_EQ(muon_momentum(m, 0), 0.95);
}

TEST(Schedule, TomlSection) {
  auto read = [](const std::string& text) {
    return schedule_config_from_toml(parse_toml_string(text, "s.toml"), "s.toml");
  };
  EXPECT_EQ(read(""), ScheduleConfig{});
  ScheduleConfig c;
  c.warmup = 20;
  c.cooldown_frac = 0.25;
  c.final_ratio = 0.0;
  c.kind = "cosine";
  EXPECT_EQ(read(c.to_toml()), c) << c.to_toml();
  EXPECT_EQ(error_of([&] { read("[schedule]\nwarmup_steps = 3\n"); }),
            "s.toml: [schedule] unknown key 'warmup_steps'");
  EXPECT_EQ(error_of([&] { read("[schedule]\nkind = \"step\"\n"); }),
            "s.toml: [schedule] kind = \"step\": expected \"linear\" or \"cosine\"");
  EXPECT_EQ(error_of([&] { read("[schedule]\ncooldown_frac = 1.5\n"); }),
            "s.toml: [schedule] cooldown_frac = 1.5: must be in [0, 1]");
  EXPECT_EQ(error_of([&] { read("[schedule]\nwarmup = -2\n"); }),
            "s.toml: [schedule] warmup = -2: must be >= 0");
}

}  // namespace
}  // namespace muongpt
