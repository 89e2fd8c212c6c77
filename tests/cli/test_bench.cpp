// `muongpt bench`: two steps of a tiny model on random tokens produce one JSON object whose
// figures exist and are positive (no timing assertions: the machine may be busy).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "testing/subprocess.h"

namespace {

using Result = muongpt::testing::CommandResult;

Result run_bench(const std::string& args) {
  return muongpt::testing::run_muongpt("bench " + args);
}

std::string tiny_config() {
  auto path = std::filesystem::temp_directory_path() / "muongpt_bench_tiny.toml";
  std::ofstream(path) << "[model]\nvocab_size = 256\nvocab_multiple = 64\nn_layer = 2\n"
                         "d_model = 32\nd_head = 16\nseq_len = 16\n"
                         "[data]\ntrain = \"/nonexistent/none_*.bin\"\nbatch_size = 2\n"
                         "[train]\nsteps = 100\n[telemetry]\nevery = 10\n";
  return path.string();
}

TEST(Bench, JsonFieldsExistAndArePositive) {
  const std::string json_path =
      (std::filesystem::temp_directory_path() / "muongpt_bench_tiny.json").string();
  std::filesystem::remove(json_path);
  Result r = run_bench("--config " + tiny_config() + " --random-data --warmup 1 --steps 2 --json " +
                       json_path);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  std::ifstream f(json_path);
  ASSERT_TRUE(f.good());
  const nlohmann::json j = nlohmann::json::parse(f);
  for (const char* key : {"tokens_per_s", "step_ms", "forward_ms", "backward_ms", "optimizer_ms",
                          "newton_schulz_ms", "telemetry_ms", "telemetry_amortised_ms",
                          "gflops_per_s", "flops_per_token", "peak_rss_mib", "params"}) {
    ASSERT_TRUE(j.contains(key)) << key << "\n" << j.dump(2);
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(j["steps"].get<int>(), 2);
  EXPECT_EQ(j["data"].get<std::string>(), "random");
  EXPECT_EQ(j["tokens_per_step"].get<int>(), 2 * 16);
  EXPECT_EQ(j["world"].get<int>(), 1);  // one process: nothing to communicate
  EXPECT_EQ(j["comm"].get<std::string>(), "single");
  EXPECT_EQ(j["communication_ms"].get<double>(), 0.0);
}

TEST(Bench, JsonOnStdoutAndErrors) {
  Result r =
      run_bench("--config " + tiny_config() + " --random-data --warmup 0 --steps 1 --json -");
  ASSERT_EQ(r.status, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_FALSE(j.contains("mfu"));  // a CPU has no known peak
  // The MFU against [device] peak_tflops (here 1 GFLOP/s), or against --peak-gflops first.
  for (const std::string peak : {"--set device.peak_tflops=0.001", "--peak-gflops 1"}) {
    r = run_bench("--config " + tiny_config() + " --random-data --warmup 0 --steps 1 --json - " +
                  peak + (peak[2] == 'p' ? " --set device.peak_tflops=5" : ""));
    ASSERT_EQ(r.status, 0) << r.out;
    j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
    ASSERT_TRUE(j.contains("mfu")) << peak;
    EXPECT_NEAR(j["mfu"].get<double>(), j["gflops_per_s"].get<double>(),
                1e-12 * j["gflops_per_s"].get<double>())
        << peak;
  }
  r = run_bench("--config " + tiny_config() + " --random-data --steps 0");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--steps"), std::string::npos) << r.out;
  r = run_bench("--config " + tiny_config());  // the shards do not exist
  EXPECT_NE(r.status, 0);
  r = run_bench("--config " + tiny_config() + " --random-data --rank x --world-size 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("muongpt: error: --rank: expected a whole number of at least 0, got 'x'"),
            std::string::npos)
      << r.out;
}

}  // namespace

namespace {

// --profile: one more step, op by op. Every kind of op of the model appears in both passes, the
// optimizer's parts appear, and the ops account for the step: what no op took is under 5%.
TEST(Bench, ProfileCoversTheStepOpByOp) {
  Result r = run_bench("--config " + tiny_config() +
                       " --random-data --warmup 1 --steps 1 --profile --json -");
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  ASSERT_TRUE(j.contains("profile")) << j.dump(2);
  const nlohmann::json& p = j["profile"];
  std::set<std::string> seen;
  double sum = 0, rest = 0;
  for (const auto& row : p["rows"]) {
    seen.insert(row["op"].get<std::string>() + "/" + row["pass"].get<std::string>());
    (row["op"] == "rest" ? rest : sum) += row["ms"].get<double>();
    EXPECT_GE(row["ms"].get<double>(), 0.0) << row;
  }
  for (const char* pass : {"forward", "backward"})
    for (const char* op : {"embedding", "norm", "qkv", "qk_norm_rope", "attention", "attn_out",
                           "mlp_in", "mlp_act", "mlp_out", "head", "loss"})
      EXPECT_TRUE(seen.count(std::string(op) + "/" + pass)) << op << " " << pass << "\n" << p;
  for (const char* op : {"adamw/optimizer", "muon_momentum/optimizer", "newton_schulz/optimizer",
                         "muon_apply/optimizer", "grad_norm/reduce", "data/"})
    EXPECT_TRUE(seen.count(op)) << op << "\n" << p;
  const double step = p["step_ms"].get<double>();
  EXPECT_NEAR(sum + rest, step, 1e-6 * step);
  EXPECT_LE(rest, 0.05 * step) << p;
  // The text form prints the same table.
  r = run_bench("--config " + tiny_config() + " --random-data --warmup 0 --steps 1 --profile");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("profile of one step"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("newton_schulz    optimizer"), std::string::npos) << r.out;
}

}  // namespace
