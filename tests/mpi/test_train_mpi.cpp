// `mpirun -np N muongpt train` end to end (CTest label `mpi`): N ranks with gradient
// accumulation k train like 1 rank with accumulation N·k; a killed or hung rank takes the job
// down with a clear message in bounded time; checkpoints resume with another world size.
//
// Tolerance: the ranks sum gradients in another order than one process does, so float32
// rounding differs (~1e-7 relative per step); AdamW's normalised update turns that into
// ±lr flips on entries whose gradient is ~0, so parameters are compared by the relative
// Frobenius norm of the difference (≤ 1e-4 per tensor; measured ~3e-5) and losses to 1e-4
// relative (measured ~4e-7). docs/distributed.md records the figures.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "data/shard.h"
#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "testing/train_runs.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;
using Result = testing::CommandResult;

using testing::expect_same_curve;
using testing::expect_same_tensors;
using testing::read_jsonl;

// `muongpt args` under mpirun with np ranks.
Result mpirun(int np, const std::string& args, const std::string& env = "") {
  return testing::mpirun_muongpt(np, args, env);
}

class TrainMpiTest : public testing::TinyRunTest {
 protected:
  std::string train(const std::string& name, int accum, const std::string& extra = "") const {
    return "train --config " + config_ + " --set run.name=" + name +
           " --set data.grad_accum=" + std::to_string(accum) + " " + extra;
  }
  std::vector<nlohmann::json> metrics(const std::string& name) const {
    return read_jsonl(run_dir(name) / "metrics.jsonl");
  }
};

TEST_F(TrainMpiTest, RanksTimesAccumulationIsOneGlobalBatch) {
  for (const char* preset : {"speedrun", "adamw"}) {
    const std::string p = std::string(" --set optim.routing=") + preset;
    const std::string one = std::string(preset) + "_1x4";
    Result r = testing::run_muongpt(train(one, 4, p));
    ASSERT_EQ(r.status, 0) << r.out;
    for (int np : {2, 4}) {
      const std::string name =
          std::string(preset) + "_" + std::to_string(np) + "x" + std::to_string(4 / np);
      r = mpirun(np, train(name, 4 / np, p));
      ASSERT_EQ(r.status, 0) << r.out;
      EXPECT_NE(r.out.find("distributed: " + std::to_string(np) + " ranks over mpi"),
                std::string::npos)
          << r.out;
      expect_same_curve(metrics(name), metrics(one), 1e-4, name);
      for (const nlohmann::json& m : metrics(name)) {  // the time in MPI collectives, per step
        ASSERT_TRUE(m.contains("comm_ms")) << m.dump();
        EXPECT_GT(m["comm_ms"].get<double>(), 0.0);
        EXPECT_LT(m["comm_ms"].get<double>(), m["step_ms"].get<double>());
      }
      for (const nlohmann::json& m : metrics(one)) EXPECT_FALSE(m.contains("comm_ms"));
      for (const char* file : {"model.safetensors", "optimizer.safetensors"})
        expect_same_tensors(checkpoint(name, 6) / file, checkpoint(one, 6) / file, 1e-4);
      // Telemetry covers every rank's tokens and every weight, once.
      testing::expect_same_telemetry(run_dir(name) / "ranks.jsonl", run_dir(one) / "ranks.jsonl",
                                     1e-4, 1e-3, name);
    }
  }
}

TEST_F(TrainMpiTest, CheckpointsResumeWithAnotherWorldSize) {
  // 2 ranks × 2 micro-steps, resumed at step 3 by 1 rank × 4 micro-steps: the same curve.
  Result r = mpirun(2, train("two", 2));
  ASSERT_EQ(r.status, 0) << r.out;
  r = testing::run_muongpt(train("two_then_one", 4, "--resume " + checkpoint("two", 3).string()));
  ASSERT_EQ(r.status, 0) << r.out;
  auto full = metrics("two");
  expect_same_curve(metrics("two_then_one"), {full.begin() + 3, full.end()}, 1e-4, "2 -> 1");
  expect_same_tensors(checkpoint("two_then_one", 6) / "model.safetensors",
                      checkpoint("two", 6) / "model.safetensors", 1e-4);

  // And 1 rank resumed by 2.
  r = testing::run_muongpt(train("one", 4));
  ASSERT_EQ(r.status, 0) << r.out;
  r = mpirun(2, train("one_then_two", 2, "--resume " + checkpoint("one", 3).string()));
  ASSERT_EQ(r.status, 0) << r.out;
  full = metrics("one");
  expect_same_curve(metrics("one_then_two"), {full.begin() + 3, full.end()}, 1e-4, "1 -> 2");
}

TEST_F(TrainMpiTest, AKilledRankEndsTheJob) {
  const auto t0 = std::chrono::steady_clock::now();
  Result r = mpirun(2, train("killed", 2, "--set train.steps=1000"), "MUONGPT_FAULT=step:4@1");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_LT(seconds, 60) << r.out;  // the launcher notices at once; the bound is comm_timeout
  // mpirun names the rank that died and how.
  EXPECT_NE(r.out.find("rank 1"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.find("signal 9") != std::string::npos ||
              r.out.find("Killed") != std::string::npos)
      << r.out;
  EXPECT_TRUE(fs::exists(checkpoint("killed", 3) / "model.safetensors")) << r.out;
}

TEST_F(TrainMpiTest, AHungRankTimesOutWithAClearError) {
  const auto t0 = std::chrono::steady_clock::now();
  Result r = mpirun(2, train("hung", 2, "--set train.steps=1000 --set device.comm_timeout=3"),
                    "MUONGPT_FAULT=hang:4@1");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_LT(seconds, 60) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: rank 0 of 2: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("has waited 3 s for the other ranks"), std::string::npos) << r.out;
}

TEST_F(TrainMpiTest, SeveralRanksWithoutMpirunIsAClearError) {
  Result r = testing::run_muongpt(train("no_mpi", 2), "RANK=1 WORLD_SIZE=2");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: torchrun: rank 1 of 2: multi-process CPU runs exchange "
                       "gradients through MPI"),
            std::string::npos)
      << r.out;
}

// A multi-GPU run takes one process per GPU: more ranks on a host than GPUs there is refused
// before NCCL is touched (NCCL would refuse two ranks on one GPU, or wait for the missing one).
TEST_F(TrainMpiTest, MoreCudaRanksThanGpusIsAClearError) {
  if (cuda_device_count() >= 2) GTEST_SKIP() << "this host has enough GPUs for two ranks";
  Result r = testing::run_muongpt(train("cuda_ranks", 1, "--set device.backend=cuda"),
                                  "RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("[device] backend = \"cuda\" with 2 ranks on "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" visible there: multi-GPU runs take one process per GPU"),
            std::string::npos)
      << r.out;
  // and says how ranks can share a GPU
  EXPECT_NE(r.out.find("[device] comm = \"mpi\" lets ranks share one, slowly, through host memory"),
            std::string::npos)
      << r.out;
}

// [device] comm = "mpi" lets CUDA ranks share a GPU (tests/cuda/test_comm_staged_cuda.cpp trains
// so), but needs MPI's launcher and a GPU: one error line each.
TEST_F(TrainMpiTest, CommChoicesThatCannotWorkAreClearErrors) {
  const std::string staged = "--set device.backend=cuda --set device.comm=mpi";
  Result r = testing::run_muongpt(train("staged_torchrun", 1, staged),
                                  "RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: torchrun: rank 0 of 2: [device] comm = \"mpi\" exchanges "
                       "through MPI: launch the ranks with mpirun (or srun with MPI)"),
            std::string::npos)
      << r.out;
  if (cuda_device_count() == 0) {
    r = mpirun(2, train("staged_no_gpu", 1, staged));
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("muongpt: error: " + config_ +
                         ": [device] backend = \"cuda\" but no GPU is visible ("),
              std::string::npos)
        << r.out;
  }
}

// `muongpt bench` under mpirun: every rank takes part (a sharded optimizer, the loss and
// gradients summed over the ranks), rank 0 alone reports, the tokens are the job's, and the
// collectives' time is split out.
TEST_F(TrainMpiTest, BenchReportsTheJobAndItsCommunication) {
  const std::string bench = "bench --config " + config_ + " --random-data --warmup 1 --steps 2";
  Result r = mpirun(2, bench + " --json -");
  ASSERT_EQ(r.status, 0) << r.out;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "rank 0 alone prints\n" << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["world"], 2);
  EXPECT_EQ(j["comm"], "mpi");
  EXPECT_EQ(j["tokens_per_step"], 2 * 2 * 16 * 2);  // batch · seq · grad_accum · ranks
  EXPECT_GT(j["communication_ms"].get<double>(), 0.0);
  EXPECT_LT(j["communication_ms"].get<double>(), j["step_ms"].get<double>());
  EXPECT_GT(j["telemetry_ms"].get<double>(), 0.0);  // the distributed telemetry ran too
  r = mpirun(2, bench);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("2 ranks over mpi"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  communication "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("bench: "), r.out.rfind("bench: ")) << "one report\n" << r.out;
}

}  // namespace
}  // namespace muongpt
