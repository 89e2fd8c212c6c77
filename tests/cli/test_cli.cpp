// The muongpt binary as a user meets it: help, version, model-info, and one clear error line
// with a non-zero exit for bad input.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "testing/subprocess.h"

namespace {

using Result = muongpt::testing::CommandResult;

Result run(const std::string& args) {
  return muongpt::testing::run_muongpt(args);
}

std::string write_config(const std::string& name, const std::string& text) {
  auto path = std::filesystem::temp_directory_path() / ("muongpt_cli_" + name + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(Cli, HelpAndVersion) {
  Result r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("model-info"), std::string::npos);
  r = run("--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out.rfind("muongpt 0.", 0), 0u) << r.out;
  r = run("model-info --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--config"), std::string::npos);
}

TEST(Cli, ModelInfoPrintsTheParameterTable) {
  Result r =
      run(std::string("model-info --config ") + MUONGPT_SOURCE_DIR + "/configs/speedrun-124m.toml");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("blocks.11.mlp.w2"), std::string::npos);
  EXPECT_NE(r.out.find("[3072, 768]"), std::string::npos);
  // 2·50304·768 + 12·12·768² = 162,201,600
  EXPECT_NE(r.out.find("total 162201600 parameters"), std::string::npos) << r.out;
  r = run(std::string("model-info --config ") + MUONGPT_SOURCE_DIR + "/configs/quickstart.toml");
  EXPECT_EQ(r.status, 0) << r.out;
}

// The memory a run needs, planned without allocating: a model far larger than the machine is
// printed, not built.
TEST(Cli, ModelInfoPrintsTheMemoryPlan) {
  const std::string cfg = std::string(MUONGPT_SOURCE_DIR) + "/configs/quickstart.toml";
  Result r = run("model-info --config " + cfg + " --set device.backend=cpu");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("memory of a training run, batch 16 x 128 tokens"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("CPU arena"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("available"), std::string::npos) << r.out;
  r = run("model-info --config " + cfg +
          " --set device.backend=cpu --set model.d_model=8192 --set model.n_layer=64");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("params 195.1 GiB"), std::string::npos) << r.out;
}

TEST(Cli, ModelInfoPrintsTheRoutingTable) {
  Result r =
      run(std::string("model-info --config ") + MUONGPT_SOURCE_DIR + "/configs/speedrun-124m.toml");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("optimizer routing: routing = \"speedrun\", 0 custom rules"),
            std::string::npos)
      << r.out;
  const size_t row = r.out.find("\nblocks.11.mlp.w2 ", r.out.find("optimizer routing"));
  ASSERT_NE(row, std::string::npos) << r.out;
  const std::string line = r.out.substr(row + 1, r.out.find('\n', row + 1) - row - 1);
  EXPECT_NE(line.find(" muon "), std::string::npos) << line;
  EXPECT_NE(line.find(" ns:jordan:5 "), std::string::npos) << line;
  EXPECT_NE(r.out.find("muon: 72 matrices, 84.93M parameters; adamw: 2 tensors, 77.27M"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("warning"), std::string::npos);
}

TEST(Cli, ModelInfoWarnsAboutRulesThatTakeNothing) {
  const std::string cfg =
      write_config("warn", "[model]\nn_layer = 2\n[optim]\nrules = [\"blocks.99.* = adamw\"]\n");
  Result r = run("model-info --config " + cfg);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("muongpt: warning: " + cfg +
                       ": [optim] rules[0] \"blocks.99.* = adamw\" matches no parameter\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("blocks.1.mlp.w1 "), std::string::npos);
}

TEST(Cli, BadInputGivesOneErrorLine) {
  struct Case {
    std::string args, expect;
  };
  const std::string unknown = write_config("unknown", "[model]\nn_layers = 2\n");
  const std::string indivisible = write_config("indiv", "[model]\nd_model = 100\nd_head = 64\n");
  const std::string negative = write_config("neg", "[model]\nseq_len = -5\n");
  const std::string syntax = write_config("syntax", "[model]\nd_model = \n");
  const std::string unrouted = write_config(
      "unrouted",
      "[model]\nn_layer = 2\n[optim]\nrouting = \"none\"\nrules = [\"blocks.* = muon\"]\n");
  const std::string bad_rule =
      write_config("bad_rule", "[model]\nn_layer = 2\n[optim]\nrules = [\"blocks.* = sgd\"]\n");
  const std::string bad_muon = write_config("bad_muon", "[optim.muon]\nnesterov = 1\n");
  for (const Case& c : {
           Case{"model-info --config " + unknown, unknown + ": [model] unknown key 'n_layers'"},
           Case{"model-info --config " + indivisible,
                indivisible + ": [model] d_model = 100: must be divisible by d_head (64)"},
           Case{"model-info --config " + negative,
                negative + ": [model] seq_len = -5: must be positive"},
           Case{"model-info --config " + syntax, syntax + ": TOML syntax error at line 2"},
           Case{"model-info --config /nonexistent.toml", "/nonexistent.toml: cannot read file"},
           Case{"model-info --config " + unrouted,
                unrouted + ": [optim] no routing rule takes parameter 'embed.weight' [50304, 768]"},
           Case{"model-info --config " + bad_rule,
                bad_rule + ": [optim] rules[0]: unknown optimizer 'sgd' (expected adamw or muon)"},
           Case{"model-info --config " + bad_muon,
                bad_muon + ": [optim.muon] nesterov: expected true or false, found an integer"},
           Case{"model-info", "--config FILE is required"},
           Case{"model-info --bogus", "model-info:"},
           Case{"frobnicate", "unknown command 'frobnicate'"},
       }) {
    Result r = run(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_EQ(lines(r.out), 1) << c.args << "\n" << r.out;
    EXPECT_EQ(r.out.rfind("muongpt: error: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << "\n" << r.out;
  }
}

// The gated MLP through the binary: model-info shows w3 between w1 and w2 with w1's shape and
// init, the MLP kind and width, and the parameter total; an unknown mlp or a negative d_mlp is one
// error line naming the key.
TEST(Cli, ModelInfoShowsTheGatedMlpAndRejectsBadMlpKeys) {
  const std::string cfg = std::string(MUONGPT_SOURCE_DIR) + "/configs/quickstart.toml";
  Result r = run("model-info --config " + cfg + " --set model.mlp=swiglu --set model.d_mlp=320");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(", mlp swiglu 320, "), std::string::npos) << r.out;
  const size_t w1 = r.out.find("\nblocks.3.mlp.w1 "), w3 = r.out.find("\nblocks.3.mlp.w3 "),
               w2 = r.out.find("\nblocks.3.mlp.w2 ");
  ASSERT_NE(w3, std::string::npos) << r.out;
  EXPECT_LT(w1, w3);
  EXPECT_LT(w3, w2);
  const std::string w1_row = r.out.substr(w1 + 1, r.out.find('\n', w1 + 1) - w1 - 1),
                    w3_row = r.out.substr(w3 + 1, r.out.find('\n', w3 + 1) - w3 - 1);
  EXPECT_NE(w3_row.find("[320, 128]"), std::string::npos) << w3_row;
  EXPECT_EQ(w3_row.substr(16), w1_row.substr(16)) << "w3 has w1's shape, count and init";
  // 2·50304·128 + 4·(4·128² + 3·320·128) = 13,631,488
  EXPECT_NE(r.out.find("total 13631488 parameters"), std::string::npos) << r.out;
  EXPECT_NE(run("model-info --config " + cfg).out.find(", mlp relu2 512, "), std::string::npos);

  for (auto [set, expect] :
       {std::pair{"--set model.mlp=geglu",
                  ": [model] mlp = \"geglu\": expected \"relu2\" or \"swiglu\""},
        std::pair{"--set model.d_mlp=-64",
                  ": [model] d_mlp = -64: must be >= 0 (0 = mlp_ratio * d_model)"}}) {
    r = run("model-info --config " + cfg + " " + set);
    EXPECT_NE(r.status, 0) << set;
    EXPECT_EQ(lines(r.out), 1) << r.out;
    EXPECT_EQ(r.out.rfind("muongpt: error: ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find(expect), std::string::npos) << r.out;
  }
}

// The hint of an error follows it on the same line.
TEST(Cli, UnknownKeyErrorSuggestsTheClosestKey) {
  const std::string typo = write_config("typo", "[model]\nn_layers = 2\n");
  Result r = run("model-info --config " + typo);
  EXPECT_NE(r.status, 0);
  EXPECT_EQ(r.out, "muongpt: error: " + typo +
                       ": [model] unknown key 'n_layers' (did you mean 'n_layer'?)\n");
}

}  // namespace

// The GPU recipe parses and trains on the CPU at a tiny batch (random ids: no FineWeb here): the
// config the GPU user runs is never untested. Newton-Schulz on 72 matrices of 768 x 3072 takes
// seconds per step on 2 cores, so the dualizer here is the Frobenius one (same routing and
// shapes, one pass per matrix).
TEST(Recipes, SpeedrunConfigRunsTwoStepsOnTheCpu) {
  const std::string cfg = std::string(MUONGPT_SOURCE_DIR) + "/configs/speedrun-124m.toml";
  Result r = run("bench --config " + cfg + " --random-data --warmup 1 --steps 1 --json - " +
                 "--set device.backend=cpu --set data.batch_size=1 --set data.seq_len=32 " +
                 "--set data.grad_accum=1 --set telemetry.every=0 " +
                 "--set optim.muon.dualizer=frobenius");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  ASSERT_EQ(j["losses"].size(), 2u);
  for (const auto& l : j["losses"]) EXPECT_TRUE(std::isfinite(l.get<double>())) << j;
  EXPECT_EQ(j["params"].get<int64_t>(), 162201600);
}

// The committed sweeps resolve every variant (a bad key in one would fail here).
TEST(Recipes, SweepFilesResolve) {
  const std::string dir = std::string(MUONGPT_SOURCE_DIR) + "/configs/sweeps/";
  Result r = run("sweep " + dir + "table2.toml --dry-run");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("sweep table2: 8 variants"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gated_criterion"), std::string::npos) << r.out;
  r = run("sweep " + dir + "demo-routing.toml --dry-run");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("sweep demo-routing: 3 variants"), std::string::npos) << r.out;
}
