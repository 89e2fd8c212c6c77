// A tiny end-to-end training setup for the trainer tests (one process or under mpirun): shards of
// a corpus with structure to learn (noisy counting modulo 96) and a 2-layer config that trains
// 6 steps in about a second, in a fresh directory named after the running test and process.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/rng.h"
#include "data/shard.h"

namespace muongpt::testing {

class TinyRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("muongpt_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_suite()->name()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
            std::to_string(::getpid()));  // two test runs at once do not share it
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Rng rng(1);
    for (auto [name, n] :
         {std::pair{"tiny_val_000000.bin", 3000}, std::pair{"tiny_train_000001.bin", 6000},
          std::pair{"tiny_train_000002.bin", 5000}}) {
      std::vector<uint16_t> t(n);
      uint16_t x = 0;
      for (auto& v : t) v = x = uint16_t((x + 1 + (rng.below(8) == 0 ? rng.below(5) : 0)) % 96);
      write_shard((dir_ / name).string(), t.data(), n);
    }
    config_ = (dir_ / "tiny.toml").string();
    std::ofstream(config_) << "[run]\nname = \"tiny\"\ndir = \"" << (dir_ / "runs").string()
                           << "\"\nseed = 7\n\n"
                              "[model]\nvocab_size = 96\nn_layer = 2\nd_model = 64\nd_head = 32\n"
                              "seq_len = 16\n\n"
                              "[data]\ntrain = \""
                           << (dir_ / "tiny_train_*.bin").string() << "\"\nval = \""
                           << (dir_ / "tiny_val_*.bin").string()
                           << "\"\nval_tokens = 2048\nbatch_size = 2\ngrad_accum = 2\n\n"
                              "[train]\nsteps = 6\nlog_every = 1\neval_every = 3\n"
                              "checkpoint_every = 3\nkeep_checkpoints = 2\n\n"
                              "[telemetry]\nevery = 2\n\n[device]\ncomm_timeout = 60\n";
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path run_dir(const std::string& name) const { return dir_ / "runs" / name; }
  std::filesystem::path checkpoint(const std::string& name, int step) const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step_%06d", step);
    return run_dir(name) / "checkpoints" / buf;
  }

  std::filesystem::path dir_;
  std::string config_;
};

}  // namespace muongpt::testing
