// What a careless or unlucky user can do to the binary, tried as they would (the CLI, config
// files, the files of a run): each gets one error line naming the file and the problem and a
// non-zero exit, or goes on correctly; nothing crashes, hangs, or loses or corrupts what was
// saved. One test per family of docs/reliability.md.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "data/data_testing.h"
#include "data/shard.h"
#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "train/checkpoint.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;
using Result = testing::CommandResult;

class Reliability : public testing::TinyRunTest {
 protected:
  Result run(const std::string& args, const std::string& env = "") const {
    return testing::run_muongpt(args, env);
  }
  std::string train(const std::string& name, const std::string& extra = "") const {
    return "train --config " + config_ + " --set run.name=" + name + " " + extra;
  }
  static bool one_error_line(const Result& r, const std::string& text) {
    return r.status == 1 && r.out.find("muongpt: error: " + text) != std::string::npos;
  }
};

bool all_finite(const SafetensorsFile& f) {
  for (const std::string& name : f.names()) {
    for (float x : f.read<float>(name))
      if (!std::isfinite(x)) return false;
  }
  return true;
}

// 1. Values reach the TOML reader and file names the filesystem untouched: no cutting at commas.
TEST_F(Reliability, OptionValuesAreNotCutAtCommas) {
  Result r = run(train("a,b",
                       "--set train.steps=1 --set 'optim.rules=[\"blocks.0.* = adamw\", "
                       "\"* = adamw\"]'"));
  ASSERT_EQ(r.status, 0) << r.out;
  std::ifstream tsv(run_dir("a,b") / "routing.tsv");
  const std::string routing((std::istreambuf_iterator<char>(tsv)), {});
  EXPECT_NE(routing.find("blocks.0.attn.wq\t64x64\tadamw"), std::string::npos) << routing;
  EXPECT_EQ(routing.find("\tmuon\t"), std::string::npos) << routing;  // "* = adamw" took the rest

  const fs::path shard = dir_ / "x,y_val_000000.bin";
  fs::copy_file(dir_ / "tiny_val_000000.bin", shard);
  r = run("shard-info '" + shard.string() + "'");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(shard.string() + "\n  tokens     3,000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("valid      yes"), std::string::npos) << r.out;
}

// 2. One process writes a run at a time; a lock left by a dead process does not block a resume.
TEST_F(Reliability, TwoProcessesNeverShareARunDirectory) {
  testing::Background first(train("busy"), (dir_ / "first.log").string(), "MUONGPT_FAULT=hang:4");
  ASSERT_TRUE(first.wait_stopped());  // after step 4, holding the run (checkpoint at step 3)
  const std::string holder = "pid " + std::to_string(first.pid());
  Result r = run(train("busy"));
  EXPECT_TRUE(one_error_line(r, run_dir("busy").string() + ": is in use by " + holder)) << r.out;
  r = run(train("busy", "--resume latest"));
  EXPECT_TRUE(one_error_line(r, run_dir("busy").string() + ": is in use by " + holder)) << r.out;
  EXPECT_EQ(first.signal_and_wait(SIGKILL), 128 + SIGKILL);
  r = run(train("busy", "--resume latest"));  // the kernel released the dead holder's lock
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("resuming " + (run_dir("busy") / "checkpoints/step_000003").string()),
            std::string::npos)
      << r.out;
}

// 3. Required keys are checked before anything is built; a directory is not a config.
TEST_F(Reliability, RequiredKeysAreCheckedBeforeTheModelIsBuilt) {
  const fs::path cfg = dir_ / "no_data.toml";
  std::ofstream(cfg) << "[train]\nsteps = 2\n";  // the default 124M model, no [data] train
  // Under a 1 MiB memory limit, planning the model first would fail on memory instead.
  Result r = run("train --config " + cfg.string(), "MUONGPT_MEMORY_LIMIT=1M");
  EXPECT_TRUE(one_error_line(r, cfg.string() + ": [data] train: no training shards given"))
      << r.out;
  r = run("train --config " + dir_.string());
  EXPECT_TRUE(one_error_line(r, dir_.string() + ": cannot read file: not a regular file")) << r.out;
}

// 5. A shard cut short under a running job: a clear error (or going on correctly), never death
// by SIGBUS, and the last checkpoint intact.
TEST_F(Reliability, AShardTruncatedUnderARunningJobIsNoSignal) {
  testing::Background job(train("cut"), (dir_ / "cut.log").string(), "MUONGPT_FAULT=hang:4");
  ASSERT_TRUE(job.wait_stopped());
  for (const char* name : {"tiny_train_000001.bin", "tiny_train_000002.bin"})
    fs::resize_file(dir_ / name, 0);  // every page of the old mapping gone
  const int status = job.signal_and_wait(SIGCONT);
  std::ifstream log(dir_ / "cut.log");
  const std::string out((std::istreambuf_iterator<char>(log)), {});
  EXPECT_LT(status, 128) << "killed by a signal\n" << out;
  if (status != 0)
    EXPECT_NE(out.find("muongpt: error: " + (dir_ / "tiny_train_").string()), std::string::npos)
        << out;
  const Checkpoint ck(latest_checkpoint(run_dir("cut").string()));
  EXPECT_TRUE(all_finite(SafetensorsFile(ck.dir() + "/model.safetensors")));
}

// 6. Not only the weights: a checkpoint whose optimizer state is not finite is never written.
TEST_F(Reliability, EverythingACheckpointHoldsIsFinite) {
  // Without a soft-cap, huge Adam steps make the logits, and then g² in Adam's v, overflow.
  Result r = run(train("blowup",
                       "--set model.softcap=0 --set optim.adamw.head_lr=1e22 "
                       "--set optim.adamw.embed_lr=1e22 --set train.checkpoint_every=1"));
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("holds a NaN or an Inf; stopping (the last checkpoint is intact)"),
            std::string::npos)
      << r.out;
  const auto kept = list_checkpoints(run_dir("blowup").string());
  ASSERT_FALSE(kept.empty()) << r.out;
  for (const std::string& ck : kept) {
    EXPECT_TRUE(all_finite(SafetensorsFile(ck + "/model.safetensors"))) << ck;
    EXPECT_TRUE(all_finite(SafetensorsFile(ck + "/optimizer.safetensors"))) << ck;
  }
}

// 7. What is accepted can be written back; what cannot is refused up front.
TEST_F(Reliability, AcceptedValuesRoundTrip) {
  Result r = run(train("x", "--set 'run.name=bad\xff'"));
  EXPECT_TRUE(one_error_line(r, "--set run.name=bad")) << r.out;
  EXPECT_NE(r.out.find("the value is not valid UTF-8"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "runs"));
  r = run(train("tab\\tname", "--set train.steps=1"));  // odd but valid: it must resume
  ASSERT_EQ(r.status, 0) << r.out;
  r = run(train("tab\\tname", "--set train.steps=2 --resume latest"));
  EXPECT_EQ(r.status, 0) << r.out;
}

// 8. Stray arguments are errors in every subcommand.
TEST_F(Reliability, StrayArgumentsAreErrors) {
  Result r = run("train --config " + config_ + " train.steps=2");
  EXPECT_TRUE(one_error_line(r,
                             "muongpt train: unexpected argument 'train.steps=2' (a config "
                             "override is --set section.key=value; see --help)"))
      << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "runs"));
  for (const std::string& args :
       {"bench --config " + config_ + " --random-data extra",
        "model-info --config " + config_ + " x", "ranks " + dir_.string() + " also",
        "sample --checkpoint " + dir_.string() + " more"}) {
    r = run(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(": unexpected argument '"), std::string::npos) << args << "\n" << r.out;
  }
}

// 9. No library's or assertion's message reaches the user; nothing exits 0 having done nothing.
TEST_F(Reliability, DamagedFilesAndBadValuesGetOurOwnWords) {
  ASSERT_EQ(run(train("done")).status, 0);
  // Resuming past the run's end does nothing: an error, not "done" with a NaN loss.
  Result r = run(train("done", "--set train.steps=3 --resume latest"));
  const fs::path ck = run_dir("done") / "checkpoints/step_000006";
  EXPECT_TRUE(one_error_line(
      r, ck.string() + ": is at step 6 and [train] steps = 3: nothing is left to train"))
      << r.out;
  std::ofstream(ck / "state.json") << "{\"version\": 1, \"step\": ";
  r = run(train("done", "--set train.steps=8 --resume " + ck.string()));
  EXPECT_TRUE(one_error_line(r, (ck / "state.json").string() + ": not valid JSON")) << r.out;
  EXPECT_EQ(r.out.find("json.exception"), std::string::npos) << r.out;
  // A garbled telemetry log is not "no telemetry yet".
  std::ofstream(run_dir("done") / "ranks.jsonl", std::ios::app) << "not json\n";
  r = run("ranks " + run_dir("done").string());
  EXPECT_TRUE(one_error_line(
      r, (run_dir("done") / "ranks.jsonl").string() + ": line 5 is not a telemetry record"))
      << r.out;
  r = run("bench --config " + config_ + " --random-data --peak-gflops -5");
  EXPECT_TRUE(one_error_line(r, "bench: --peak-gflops must be a finite number >= 0")) << r.out;
}

// A checkpoint that cannot be written in full (a full disk, a file-size limit) leaves no
// half-written temporary directory behind.
TEST_F(Reliability, AFailedCheckpointWriteLeavesNothingBehind) {
  // ulimit -f in 512-byte blocks: room for the run's small files, not for the weights.
  const Result r = run(train("full", "--set train.steps=1"), "ulimit -f 200;");
  EXPECT_EQ(r.status, 1) << r.out;
  EXPECT_NE(r.out.find("muongpt: error: "), std::string::npos) << r.out;
  for (const auto& e : fs::directory_iterator(run_dir("full") / "checkpoints"))
    ADD_FAILURE() << "left behind: " << e.path();
}

}  // namespace
}  // namespace muongpt
