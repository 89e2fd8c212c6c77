// `muongpt sweep` and `muongpt compare` on tiny runs, as a user runs them: a sweep of three
// variants runs, re-running skips the finished ones, a variant killed mid-run resumes to the
// losses of an uninterrupted run, a failing variant is recorded without stopping the others;
// compare's diffs and numbers are those of the runs' files, and a mismatched run is flagged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "testing/train_runs.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Result = testing::CommandResult;

using testing::read_jsonl;

std::vector<double> losses(const fs::path& run) {
  std::vector<double> out;
  for (const json& r : read_jsonl(run / "metrics.jsonl")) out.push_back(r["train_loss"]);
  return out;
}

class SweepTest : public testing::TinyRunTest {
 protected:
  Result run(const std::string& args, const std::string& env = "") const {
    return testing::run_muongpt(args, env);
  }
  // A sweep file beside the tiny config: the three routings of the seed paper's comparison.
  std::string sweep_file(const std::string& extra = "") const {
    const fs::path p = dir_ / "routing.toml";
    std::ofstream(p) << "base = \"tiny.toml\"\nname = \"routes\"\n"
                     << extra
                     << "\n[axes]\n\"optim.routing\" = [\"adamw\", \"muon-wout\", \"speedrun\"]\n";
    return p.string();
  }
  fs::path sweep_dir() const { return dir_ / "runs" / "routes"; }
};

TEST_F(SweepTest, RunsSkipsResumesAndRecords) {
  const std::string file = sweep_file();
  Result r = run("sweep " + file + " --dry-run");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("muon-wout                new      optim.routing=\"muon-wout\""),
            std::string::npos)
      << r.out;
  // Killed at step 5 of the first variant (after its checkpoint at step 3).
  r = run("sweep " + file, "MUONGPT_FAULT=step:5");
  EXPECT_EQ(r.status, 128 + 9) << r.out;
  r = run("sweep " + file + " --dry-run");
  EXPECT_NE(r.out.find("adamw                    partial"), std::string::npos) << r.out;
  r = run("sweep " + file);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("variant 1/3 'adamw' (optim.routing=\"adamw\"): resuming"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("variant 3/3 'speedrun' (optim.routing=\"speedrun\"): starting"),
            std::string::npos)
      << r.out;
  // The resumed variant trains exactly like an uninterrupted run of its config.
  ASSERT_EQ(
      run("train --config " + config_ + " --set optim.routing=adamw --set run.name=whole").status,
      0);
  EXPECT_EQ(losses(sweep_dir() / "adamw"), losses(run_dir("whole")));
  // Re-running skips everything; sweep.json records every variant.
  r = run("sweep " + file);
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* v : {"adamw", "muon-wout", "speedrun"})
    EXPECT_NE(
        r.out.find(std::string("'") + v + "' (optim.routing=\"" + v + "\"): finished, skipped"),
        std::string::npos)
        << r.out;
  const json rec = json::parse(std::ifstream(sweep_dir() / "sweep.json"));
  ASSERT_EQ(rec["variants"].size(), 3u);
  EXPECT_EQ(rec["variants"][1]["name"], "muon-wout");
  EXPECT_EQ(rec["variants"][1]["status"], "done");
  // --print-commands: one train command per variant, for clusters.
  r = run("sweep " + file + " --print-commands --launcher 'srun -n 4'");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("srun -n 4 muongpt train --config " + (dir_ / "tiny.toml").string() +
                       " --set 'optim.routing=\"speedrun\"' --set run.dir=" + sweep_dir().string() +
                       " --set run.name=speedrun\n"),
            std::string::npos)
      << r.out;
}

TEST_F(SweepTest, AFailingVariantIsRecordedAndTheOthersRun) {
  const fs::path p = dir_ / "mixed.toml";
  std::ofstream(p) << "base = \"tiny.toml\"\nname = \"mixed\"\n"
                   << "[[variant]]\nname = \"ok\"\n"
                   << "[[variant]]\nname = \"no-data\"\nset = [\"data.train=" << dir_.string()
                   << "/none_*.bin\"]\n"
                   << "[[variant]]\nname = \"also-ok\"\nset = [\"optim.routing=adamw\"]\n";
  const Result r = run("sweep " + p.string());
  EXPECT_EQ(r.status, 1) << r.out;
  const json rec = json::parse(std::ifstream(dir_ / "runs/mixed/sweep.json"));
  ASSERT_EQ(rec["variants"].size(), 3u) << r.out;
  EXPECT_EQ(rec["variants"][0]["status"], "done");
  EXPECT_EQ(rec["variants"][1]["status"], "failed");
  EXPECT_NE(rec["variants"][1]["error"].get<std::string>().find("none_*.bin"), std::string::npos);
  EXPECT_EQ(rec["variants"][2]["status"], "done");
  EXPECT_EQ(losses(dir_ / "runs/mixed/also-ok").size(), 6u);
}

TEST_F(SweepTest, CompareShowsTheRunsFiguresAndFlagsMismatches) {
  ASSERT_EQ(run("sweep " + sweep_file()).status, 0);
  ASSERT_EQ(run("train --config " + config_ + " --set run.name=small --set model.n_layer=1 " +
                "--set train.steps=4")
                .status,
            0);
  Result r = run("compare " + sweep_dir().string() + " " + run_dir("small").string() + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const json j = json::parse(r.out);
  const json& runs = j["runs"];
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0]["run"], "routes/adamw");
  EXPECT_TRUE(runs[0]["changes"].empty());
  EXPECT_EQ(runs[1]["changes"], json::array({"optim.routing=\"muon-wout\""}));
  // The figures are those of metrics.jsonl: final and best val loss, tokens.
  for (size_t i = 0; i < 3; ++i) {
    const auto m =
        read_jsonl(sweep_dir() / runs[i]["run"].get<std::string>().substr(7) / "metrics.jsonl");
    double best = 1e30;
    for (const json& rec : m)
      if (rec.contains("val_loss")) best = std::min(best, rec["val_loss"].get<double>());
    EXPECT_EQ(runs[i]["final_val_loss"].get<double>(), m.back()["val_loss"].get<double>());
    EXPECT_EQ(runs[i]["best_val_loss"].get<double>(), best);
    EXPECT_EQ(runs[i]["tokens"].get<double>(), m.back()["tokens"].get<double>());
    EXPECT_TRUE(runs[i]["flags"].empty()) << runs[i];
  }
  // Matched tokens: the shorter run's last evaluation; its Δ and share are relative.
  const double delta =
      runs[1]["matched_val_loss"].get<double>() - runs[0]["matched_val_loss"].get<double>();
  EXPECT_DOUBLE_EQ(runs[1]["delta"].get<double>(), delta);
  EXPECT_EQ(runs[3]["flags"], json::array({"other tokens", "other model"}));
  // Telemetry: the weights whose routing differs, at the last step every run has, with the
  // numbers of ranks.jsonl.
  EXPECT_EQ(j["telemetry"]["step"], 4);
  bool found = false;
  const auto ranks = read_jsonl(sweep_dir() / "speedrun/ranks.jsonl");
  for (const json& w : j["telemetry"]["weights"]) {
    EXPECT_NE(w["weight"], "embed.weight");  // every run routes it to AdamW
    if (w["weight"] == "blocks.1.mlp.w1" && w["run"] == "routes/speedrun") {
      found = true;
      for (const json& rec : ranks)
        if (rec["step"] == 4) EXPECT_EQ(w["grad_nr"], rec["weights"]["blocks.1.mlp.w1"]["grad_nr"]);
      EXPECT_EQ(w["optimizer"], "muon/ns:jordan:5");
    }
  }
  EXPECT_TRUE(found) << j["telemetry"];
  // The text and CSV forms.
  r = run("compare " + sweep_dir().string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("routes/muon-wout"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("telemetry at step 6"), std::string::npos) << r.out;
  r = run("compare " + sweep_dir().string() + " --csv");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out.rfind("run,final_val_loss,best_val_loss,", 0), 0u) << r.out;
}

TEST_F(SweepTest, BadInputIsOneClearLine) {
  auto error_of = [&](const std::string& body, const std::string& cmd = "sweep ") {
    const fs::path p = dir_ / "bad.toml";
    std::ofstream(p) << "base = \"tiny.toml\"\n" << body;
    const Result r = run(cmd + p.string());
    EXPECT_EQ(r.status, 1) << r.out;
    return r.out;
  };
  const std::string at = "muongpt: error: " + (dir_ / "bad.toml").string() + ": ";
  EXPECT_NE(error_of("nmae = \"x\"\n").find(at + "[sweep] unknown key 'nmae'"), std::string::npos);
  EXPECT_NE(error_of("[[variant]]\nname = \"a\"\nset = [\"optim.routng=adamw\"]\n")
                .find(at + "variant 'a': "),
            std::string::npos);
  EXPECT_NE(error_of("[[variant]]\nname = \"a\"\nset = [\"optim.routng=adamw\"]\n")
                .find("[optim] unknown key 'routng'"),
            std::string::npos);
  EXPECT_NE(error_of("[[variant]]\nname = \"a\"\n[[variant]]\nname = \"a\"\n")
                .find(at + "two variants are named 'a'"),
            std::string::npos);
  EXPECT_NE(error_of("").find(at + "no variants"), std::string::npos);
  const Result r = run("compare " + dir_.string());
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("muongpt: error: " + dir_.string() + ": not a run directory"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace muongpt
