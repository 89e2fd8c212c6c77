// `muongpt train` end to end on a tiny model and tiny shards, run as a user runs it (the binary,
// in a subprocess): exact resume, crash safety under SIGKILL, refused checkpoints, NaN stops.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "data/data_testing.h"
#include "data/shard.h"
#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "testing/train_runs.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;

using Result = testing::CommandResult;

Result run(const std::string& args, const std::string& env = "") {
  return testing::run_muongpt(args, env);
}

using testing::read_jsonl;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class TrainerTest : public testing::TinyRunTest {
 protected:
  std::string train(const std::string& name, const std::string& extra = "") const {
    return "train --config " + config_ + " --set run.name=" + name + " " + extra;
  }
  std::vector<double> losses(const std::string& name) const {
    std::vector<double> out;
    for (const auto& r : read_jsonl(run_dir(name) / "metrics.jsonl"))
      out.push_back(r["train_loss"].get<double>());
    return out;
  }
};

TEST_F(TrainerTest, WritesTheRunDirectoryAndLearns) {
  Result r = run(train("full"));
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* f : {"config.toml", "routing.tsv", "metrics.jsonl", "ranks.jsonl", "log.txt",
                        "checkpoints/step_000006/model.safetensors"})
    EXPECT_TRUE(fs::exists(run_dir("full") / f)) << f;
  EXPECT_FALSE(fs::exists(run_dir("full") / "checkpoints/step_000000"));
  EXPECT_EQ(list_checkpoints(run_dir("full").string()).size(), 2u);  // keep_checkpoints = 2
  auto metrics = read_jsonl(run_dir("full") / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 6u);
  EXPECT_TRUE(metrics[2].contains("val_loss"));
  EXPECT_EQ(metrics[5]["tokens"], 6 * 2 * 2 * 16);
  EXPECT_LT(metrics[5]["train_loss"].get<double>(), metrics[0]["train_loss"].get<double>());
  for (const auto& m : metrics) EXPECT_FALSE(m.contains("mfu")) << "a CPU has no known peak";
  auto ranks = read_jsonl(run_dir("full") / "ranks.jsonl");
  ASSERT_EQ(ranks.size(), 4u);  // steps 1, 2, 4, 6
  EXPECT_EQ(ranks[2]["step"], 4);
  // The resolved config reads back to the same config.
  RunConfig saved = load_run_config((run_dir("full") / "config.toml").string());
  EXPECT_EQ(saved.to_toml(), load_run_config(config_, {"run.name=full"}).to_toml());
  // `muongpt ranks` reads the run back.
  r = run("ranks " + run_dir("full").string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("4 telemetry records, steps 1..6"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blocks.1.mlp.w2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blocks.1.mlp_act"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nr(G) >= st(A)"), std::string::npos) << r.out;
  r = run("ranks " + run_dir("full").string() + " --step 4");  // one record of the run
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("4 telemetry records, steps 1..6; step 4 over"), std::string::npos) << r.out;
  r = run("ranks " + run_dir("full").string() + " --step 3");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("has no telemetry record at step 3 (records at steps 1, 2, 4, 6)"),
            std::string::npos)
      << r.out;
  // --csv: every record as rows, the numbers exactly those of ranks.jsonl.
  r = run("ranks " + run_dir("full").string() + " --csv");
  ASSERT_EQ(r.status, 0) << r.out;
  std::istringstream csv(r.out);
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line,
            "step,tokens,kind,name,st,p_max,input,grad_nr,grad_st,ratio,update_st,update_rel,"
            "alt_input,alt_ratio");
  size_t rows = 0, want_rows = 0;
  for (const auto& rec : ranks) want_rows += rec["act"].size() + rec["weights"].size();
  bool found = false;
  while (std::getline(csv, line)) {
    ++rows;
    if (line.starts_with("4,") && line.find(",weight,blocks.1.mlp.w2,") != std::string::npos) {
      found = true;
      std::vector<std::string> cells;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
      ASSERT_GE(cells.size(), 13u) << line;
      EXPECT_EQ(cells[6], "blocks.1.mlp_act");
      EXPECT_EQ(std::stod(cells[7]),
                ranks[2]["weights"]["blocks.1.mlp.w2"]["grad_nr"].get<double>());
      EXPECT_EQ(cells[12], "blocks.1.mlp_pre");
    }
  }
  EXPECT_EQ(rows, want_rows);
  EXPECT_TRUE(found) << r.out;
  r = run("ranks " + run_dir("full").string() + " --csv --step 6");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(size_t(std::count(r.out.begin(), r.out.end(), '\n')),
            1 + ranks[3]["act"].size() + ranks[3]["weights"].size());
  // A second fresh run into the same directory is refused rather than mixed in.
  r = run(train("full"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("already holds checkpoints"), std::string::npos) << r.out;
}

// `muongpt bench` runs the trainer's own step (clipping and checks included), so on the same
// config and seed it produces the same losses, step for step: one warm-up step, three timed ones
// and the two telemetry steps it times.
TEST_F(TrainerTest, BenchRunsTheSameStepsAsTraining) {
  const std::string clip = "--set train.clip=0.5";  // clipping is part of the step
  Result r = run(train("same", clip));
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<double> trained = losses("same");
  ASSERT_EQ(trained.size(), 6u);
  r = run("bench --config " + config_ + " " + clip + " --warmup 1 --steps 3 --json -");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(j["data"], "shards");
  const std::vector<double> benched = j["losses"].get<std::vector<double>>();
  EXPECT_EQ(benched, trained);
  EXPECT_EQ(j["final_loss"].get<double>(), trained.back());
  EXPECT_GT(j["reduce_ms"].get<double>(), 0.0);
}

// With [device] peak_tflops, every logged step has its MFU: the FLOP count of docs/bench.md times
// tokens/s over the peak; the console shows it too.
TEST_F(TrainerTest, MfuAgainstTheGivenPeak) {
  Result r = run(train("mfu", "--set train.steps=2 --set device.peak_tflops=0.001"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("MFU against 0.001 TFLOP/s per device"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" | MFU "), std::string::npos) << r.out;
  const RunConfig cfg = load_run_config(config_);
  const double flops = train_flops_per_token(cfg.model, param_specs(cfg.model), cfg.seq());
  const auto metrics = read_jsonl(run_dir("mfu") / "metrics.jsonl");
  ASSERT_EQ(metrics.size(), 2u);
  for (const auto& m : metrics) {
    ASSERT_TRUE(m.contains("mfu")) << m.dump();
    const double want = flops * m["tokens_per_s"].get<double>() / 1e9;  // 0.001 TFLOP/s
    EXPECT_NEAR(m["mfu"].get<double>(), want, 1e-9 * want);
  }
}

// `muongpt ranks` on a damaged ranks.jsonl: a partial last line (a run killed mid-write) is
// skipped; anything else that is not a record is one error line naming the file and line.
TEST_F(TrainerTest, RanksRefusesDamagedTelemetry) {
  const std::filesystem::path run_dir = dir_ / "damaged";
  std::filesystem::create_directories(run_dir);
  const std::string file = (run_dir / "ranks.jsonl").string();
  const std::string good =
      R"({"step": 4, "tokens": 64, "seconds": 0.1, "act": {"tokens": {"st": 2.5}},)"
      R"( "weights": {"w": {"input": "tokens", "grad_nr": 3.0}}})";
  Result r = run("ranks " + run_dir.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("muongpt: error: " + file + ": missing"), std::string::npos) << r.out;
  std::ofstream(file) << good << "\n" << good.substr(0, 40);  // killed mid-write
  r = run("ranks " + run_dir.string());
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("1 telemetry records, steps 4..4; latest over 64 tokens"), std::string::npos)
      << r.out;
  for (const std::string& bad :
       {std::string("not json"), std::string(R"({"step": "4", "act": {}, "weights": {}})"),
        std::string(R"({"step": 4, "act": [], "weights": {}})"), std::string("[1, 2]")}) {
    std::ofstream(file) << bad << "\n" << good << "\n";
    r = run("ranks " + run_dir.string());
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_NE(r.out.find("muongpt: error: " + file + ": line 1 is not a telemetry record"),
              std::string::npos)
        << bad << "\n"
        << r.out;
  }
}

TEST_F(TrainerTest, KilledMidStepResumesIdentically) {
  ASSERT_EQ(run(train("full")).status, 0);
  Result r = run(train("killed"), "MUONGPT_FAULT=step:5");
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.out;
  EXPECT_EQ(latest_checkpoint(run_dir("killed").string()),
            (run_dir("killed") / "checkpoints/step_000003").string());
  r = run(train("killed", "--resume latest"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(losses("killed"), losses("full"));  // bit-exact on the CPU path
  EXPECT_EQ(read_bytes(run_dir("killed") / "checkpoints/step_000006/model.safetensors"),
            read_bytes(run_dir("full") / "checkpoints/step_000006/model.safetensors"));
  EXPECT_EQ(read_jsonl(run_dir("killed") / "ranks.jsonl").size(), 4u);  // no duplicates
}

TEST_F(TrainerTest, ResumingAnOlderCheckpointSetsTheNewerOnesAside) {
  ASSERT_EQ(run(train("full")).status, 0);
  const auto want = losses("full");
  const fs::path ckpts = run_dir("full") / "checkpoints";
  Result r = run(train("full", "--resume " + (ckpts / "step_000003").string()));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("set aside"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(ckpts / "abandoned_step_000006"));
  EXPECT_EQ(losses("full"), want);  // the same steps again, no duplicated records
  EXPECT_EQ(latest_checkpoint(run_dir("full").string()), (ckpts / "step_000006").string());
}

TEST_F(TrainerTest, KilledMidCheckpointResumesFromTheLastCompleteOne) {
  ASSERT_EQ(run(train("full")).status, 0);
  Result r = run(train("killed"), "MUONGPT_FAULT=checkpoint:6");
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.out;
  EXPECT_EQ(latest_checkpoint(run_dir("killed").string()),
            (run_dir("killed") / "checkpoints/step_000003").string());
  r = run(train("killed", "--resume latest"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(losses("killed"), losses("full"));
  for (const auto& e : fs::directory_iterator(run_dir("killed") / "checkpoints"))
    EXPECT_FALSE(e.path().filename().string().starts_with(".tmp")) << e.path();
}

TEST_F(TrainerTest, RefusesCorruptOrMismatchedCheckpoints) {
  ASSERT_EQ(run(train("base", "--set train.steps=3")).status, 0);
  const fs::path ck = run_dir("base") / "checkpoints/step_000003";
  // A different model.
  Result r = run(train("base", "--set train.steps=6 --set model.d_model=128 --resume latest"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("different model: d_model = 64 there, d_model = 128"), std::string::npos)
      << r.out;
  // A truncated weights file.
  const std::string weights = read_bytes(ck / "model.safetensors");
  fs::resize_file(ck / "model.safetensors", weights.size() - 100);
  r = run(train("base", "--set train.steps=6 --resume latest"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find((ck / "model.safetensors").string()), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: "), std::string::npos) << r.out;
  // Garbage state (with the weights intact again).
  std::ofstream(ck / "model.safetensors", std::ios::binary) << weights;
  std::ofstream(ck / "state.json") << "{\"version\": 1, \"st";
  r = run(train("base", "--set train.steps=6 --resume " + ck.string()));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("state.json: not valid JSON"), std::string::npos) << r.out;
  // Nothing to resume.
  r = run(train("nothing", "--resume latest"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("has no checkpoint to resume from"), std::string::npos) << r.out;
}

TEST_F(TrainerTest, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  // An absurd Muon learning rate overflows the hidden weights within a few steps.
  Result r = run(train("blowup",
                       "--set optim.muon.lr=1e38 --set train.checkpoint_every=1 "
                       "--set train.steps=20"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("; stopping (the last checkpoint is intact)"), std::string::npos) << r.out;
  const std::string last = latest_checkpoint(run_dir("blowup").string());
  ASSERT_FALSE(last.empty());
  const Checkpoint ck(last);
  for (float w : ck.weights(ck.model_config())) ASSERT_TRUE(std::isfinite(w)) << last;
}

// A model that does not fit is refused with one line before anything is allocated (not killed by
// the kernel): far too large for any machine, too large for this one, or for a given limit.
TEST_F(TrainerTest, AModelLargerThanTheMemoryIsRefusedBeforeAllocating) {
  const std::string error = "muongpt: error: ";
  Result r = run(train("huge", "--set model.n_layer=2147483648"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("[model] n_layer = 2147483648: must be <= 4096"), std::string::npos)
      << r.out;
  r = run(
      train("huge", "--set model.n_layer=4096 --set model.d_model=65536 --set model.d_head=128"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("more than any machine has"), std::string::npos) << r.out;
  r = run(train("large", "--set model.d_model=8192 --set model.d_head=128 --set model.n_layer=64"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find(error + config_ + ": the model (CPU arena"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GiB available"), std::string::npos) << r.out;
  r = run(train("limited"), "MUONGPT_MEMORY_LIMIT=1M");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("needs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", 1.0 MiB available"), std::string::npos) << r.out;
  r = run(train("bad_limit"), "MUONGPT_MEMORY_LIMIT=lots");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find(error + "$MUONGPT_MEMORY_LIMIT: expected bytes"), std::string::npos)
      << r.out;
  for (const char* name : {"huge", "large", "limited"})
    EXPECT_FALSE(fs::exists(run_dir(name) / "checkpoints")) << name;
}

TEST_F(TrainerTest, TheCudaBackendWithoutAGpuIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: tests/cuda trains on it";
  Result r = run(train("cuda", "--set device.backend=cuda"));
  EXPECT_EQ(r.status, 1) << r.out;
  const std::string want = "muongpt: error: " + config_ + ": [device] backend = \"cuda\"";
  const bool no_gpu = r.out.find(want + " but no GPU is visible (") != std::string::npos;
  const bool no_cuda =
      r.out.find(want + ": this muongpt was built without CUDA support") != std::string::npos;
  EXPECT_TRUE(built_with_cuda() ? no_gpu : no_cuda) << r.out;
  EXPECT_FALSE(fs::exists(run_dir("cuda") / "checkpoints")) << r.out;
}

// NCCL moves GPU memory: asking for it on the CPU is an error, even for one rank.
TEST_F(TrainerTest, NcclOnTheCpuIsAClearError) {
  Result r = run(train("nccl_on_cpu", "--set device.backend=cpu --set device.comm=nccl"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: " + config_ +
                       ": [device] comm = \"nccl\" moves GPU memory, but this run's backend is cpu "
                       "(use comm = \"auto\" or \"mpi\", or backend = \"cuda\")\n"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(run_dir("nccl_on_cpu") / "checkpoints")) << r.out;
}

TEST_F(TrainerTest, SampleDecodesFromACheckpoint) {
  MG_REQUIRE_VOCAB();  // skips without gpt2.tiktoken, fails in CI (MUONGPT_REQUIRE_VOCAB)
  const std::string vocab = testing::vocab_path();
  // A GPT-2-vocabulary model (the tiny shards' ids are valid GPT-2 ids).
  ASSERT_EQ(run(train("gpt2", "--set model.vocab_size=50257 --set train.steps=2")).status, 0);
  const std::string args = "sample --checkpoint " + run_dir("gpt2").string() + " --vocab " + vocab +
                           " --prompt 'Hello' --tokens 12 --seed 3";
  Result a = run(args), b = run(args);
  ASSERT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(a.out.rfind("Hello", 0), 0u) << a.out;  // the prompt, then the continuation
  EXPECT_GT(a.out.size(), std::string("Hello\n").size());
  EXPECT_EQ(a.out, b.out);  // the same seed gives the same text
  Result greedy = run(args + " --temperature 0");
  EXPECT_EQ(greedy.status, 0) << greedy.out;
  // The tiny model's vocabulary cannot be decoded with GPT-2's, and bad flags are one line.
  ASSERT_EQ(run(train("small", "--set train.steps=1")).status, 0);
  Result bad = run("sample --checkpoint " + run_dir("small").string() + " --vocab " + vocab);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("smaller than GPT-2's"), std::string::npos) << bad.out;
  bad = run(args + " --temperature -1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("--temperature must be >= 0"), std::string::npos) << bad.out;
}

// mlp = "swiglu" end to end: it trains (w3 routed like w1, the gated branches in ranks.jsonl),
// resumes bit-exactly after a SIGKILL, and a checkpoint of the other MLP is refused naming the
// key, both ways, before anything is written.
TEST_F(TrainerTest, SwigluTrainsResumesAndRefusesTheOtherMlp) {
  const std::string gated = "--set model.mlp=swiglu --set model.d_mlp=96 ";
  Result r = run(train("gated", gated));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(read_bytes(run_dir("gated") / "routing.tsv").find("\nblocks.1.mlp.w3\t96x64\tmuon\t"),
            std::string::npos);
  const auto ranks = read_jsonl(run_dir("gated") / "ranks.jsonl");
  ASSERT_EQ(ranks.size(), 4u);
  for (const char* key : {"blocks.1.mlp_up", "blocks.1.mlp_gate", "blocks.1.mlp_pre"})
    EXPECT_TRUE(ranks[3]["act"][key]["st"].is_number()) << key;
  EXPECT_EQ(ranks[3]["weights"]["blocks.1.mlp.w3"]["input"], "blocks.1.mlp_in");
  EXPECT_LT(losses("gated").back(), losses("gated").front());

  r = run(train("killed", gated), "MUONGPT_FAULT=step:5");
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.out;
  r = run(train("killed", gated + "--resume latest"));
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(losses("killed"), losses("gated"));  // bit-exact on the CPU path
  EXPECT_EQ(read_bytes(run_dir("killed") / "checkpoints/step_000006/model.safetensors"),
            read_bytes(run_dir("gated") / "checkpoints/step_000006/model.safetensors"));

  ASSERT_EQ(run(train("plain", "--set train.steps=3")).status, 0);
  const std::string before = read_bytes(run_dir("plain") / "metrics.jsonl");
  r = run(train("plain", gated + "--set train.steps=6 --resume latest"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("muongpt: error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checkpoint was written for a different model: mlp = \"relu2\" there, "
                       "mlp = \"swiglu\" in this config"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(read_bytes(run_dir("plain") / "metrics.jsonl"), before);
  r = run(train("gated", "--set train.steps=8 --resume latest"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("different model: mlp = \"swiglu\" there, mlp = \"relu2\""),
            std::string::npos)
      << r.out;
}

// The sampler decodes a gated model through the KV-cache decoder (the same MLP sublayer).
TEST_F(TrainerTest, SampleDecodesFromASwigluCheckpoint) {
  MG_REQUIRE_VOCAB();
  const std::string vocab = testing::vocab_path();
  ASSERT_EQ(run(train("gpt2",
                      "--set model.vocab_size=50257 --set train.steps=2 "
                      "--set model.mlp=swiglu --set model.d_mlp=160"))
                .status,
            0);
  const std::string args = "sample --checkpoint " + run_dir("gpt2").string() + " --vocab " + vocab +
                           " --prompt 'Hello' --tokens 12 --seed 3";
  Result a = run(args), b = run(args);
  ASSERT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(a.out.rfind("Hello", 0), 0u) << a.out;
  EXPECT_GT(a.out.size(), std::string("Hello\n").size());
  EXPECT_EQ(a.out, b.out);
}

TEST(RunConfig, ErrorsNameTheKeyAndOverridesApply) {
  auto error_of = [](const std::string& text, std::vector<std::string> sets = {}) {
    try {
      std::string path = (fs::temp_directory_path() / "muongpt_cfg_test.toml").string();
      std::ofstream(path) << text;
      load_run_config(path, sets);
    } catch (const Error& e) {
      std::string m = e.what();
      return m.substr(m.find(": ") + 2);
    }
    return std::string();
  };
  EXPECT_EQ(error_of("[trian]\nsteps = 3\n"), "unknown section [trian]");
  EXPECT_EQ(error_of("[train]\nstep = 3\n"), "[train] unknown key 'step'");
  EXPECT_EQ(error_of("[train]\nsteps = \"many\"\n"),
            "[train] steps: expected an integer, found a string");
  EXPECT_EQ(error_of("[train]\nsteps = 0\n"), "[train] steps: must be positive");
  EXPECT_EQ(error_of("[data]\nmode = \"shuffled\"\n"),
            "[data] mode: expected \"contiguous\", \"bos-aligned\" or \"random\", found "
            "\"shuffled\"");
  EXPECT_EQ(error_of("[device]\nbackend = \"tpu\"\n"),
            "[device] backend: expected \"auto\", \"cpu\" or \"cuda\", found \"tpu\"");
  EXPECT_EQ(error_of("[device]\nprecision = \"fp16\"\n"),
            "[device] precision: expected \"bf16\" or \"fp32\", found \"fp16\"");
  EXPECT_EQ(error_of("[device]\nattention = \"fast\"\n"),
            "[device] attention: expected \"straightforward\" or \"flash\", found \"fast\"");
  EXPECT_EQ(error_of("[device]\nprecision = \"fp32\"\nattention = \"flash\"\n"),
            "[device] attention: \"flash\" runs in bf16 only (precision is \"fp32\")");
  EXPECT_EQ(error_of("[device]\ncomm = \"gloo\"\n"),
            "[device] comm: expected \"auto\", \"nccl\" or \"mpi\", found \"gloo\"");
  EXPECT_EQ(error_of("[device]\ncomm_timeout = -1\n"),
            "[device] comm_timeout: must be >= 0 seconds (0 = wait forever)");
  EXPECT_EQ(error_of("[device]\npeak_tflops = -2.0\n"),
            "[device] peak_tflops: must be a finite number >= 0 (0 = look the GPU up)");
  EXPECT_EQ(error_of("", {"train.steps=-4"}), "[train] steps: must be positive");
  EXPECT_EQ(error_of("", {"trainsteps"}), "expected section.key=value");
  EXPECT_EQ(error_of("", {"run.name=a/b"}), "[run] name: 'a/b' is not a directory name");
  std::string path = (fs::temp_directory_path() / "muongpt_cfg_ok.toml").string();
  std::ofstream(path) << "[train]\nsteps = 3\n";
  RunConfig c = load_run_config(path, {"train.steps=9", "run.name=abc", "optim.muon.lr=0.02",
                                       "telemetry.every=0", "device.attention=flash"});
  EXPECT_EQ(c.train.steps, 9);
  EXPECT_EQ(c.run.name, "abc");
  EXPECT_DOUBLE_EQ(c.optim.muon.lr, 0.02);
  EXPECT_EQ(c.telemetry.every, 0);
  EXPECT_EQ(run_config_from_string(c.to_toml(), "x").to_toml(), c.to_toml());
  // The saved config keeps every [device] key (a resumed run computes the same way).
  const RunConfig back = run_config_from_string(c.to_toml(), "x");
  EXPECT_EQ(back.device.attention, "flash");
  EXPECT_EQ(back.device.precision, "bf16");
  EXPECT_EQ(run_config_from_string(load_run_config(path, {"device.precision=fp32"}).to_toml(), "x")
                .device.precision,
            "fp32");
}

}  // namespace
}  // namespace muongpt
