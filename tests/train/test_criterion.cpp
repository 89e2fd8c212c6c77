// Routing by the criterion (train/criterion.h): the decision follows the measured ratios (a
// threshold above every ratio moves nothing, one below every ratio moves every candidate), is
// deterministic, survives a resume on both sides of it, and is recorded; the optimizer switch
// carries AdamW's first moment into Muon's momentum; bad configs are one clear error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/rng.h"
#include "model/gpt.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "testing/model_util.h"
#include "testing/subprocess.h"
#include "testing/tiny_run.h"
#include "testing/train_runs.h"
#include "train/checkpoint.h"
#include "train/criterion.h"

namespace muongpt {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Result = testing::CommandResult;

using testing::read_jsonl;

// The probe's arithmetic: the mean of the numeric ratios of each candidate, nulls skipped.
TEST(Criterion, TheDecisionFollowsTheMeanRatios) {
  CriterionProbe probe({"a", "b", "c"});
  probe.add({{"weights",
              {{"a", {{"ratio", 0.5}}}, {"b", {{"ratio", 2.0}}}, {"c", {{"ratio", nullptr}}}}}});
  probe.add({{"weights", {{"a", {{"ratio", 1.7}}}, {"b", {{"ratio", 1.0}}}}}});
  const CriterionDecision d = probe.decide(2, 1.1);
  EXPECT_DOUBLE_EQ(d.ratios[0].second, 1.1);
  EXPECT_DOUBLE_EQ(d.ratios[1].second, 1.5);
  EXPECT_TRUE(std::isnan(d.ratios[2].second));               // never measured: never moved
  EXPECT_EQ(d.moved, std::vector<std::string>({"a", "b"}));  // >= threshold
  EXPECT_EQ(probe.decide(2, 1.6).moved, std::vector<std::string>{});
  // Round trips: the decision through JSON, the sums through a checkpoint.
  const CriterionDecision back = CriterionDecision::from_json(d.to_json(), "x");
  EXPECT_EQ(back.moved, d.moved);
  EXPECT_EQ(back.to_json(), d.to_json());
  CriterionProbe again({"a", "b", "c"});
  again.restore(probe.to_json(), "x");
  EXPECT_EQ(again.decide(2, 1.1).to_json(), d.to_json());
  EXPECT_THROW(CriterionProbe({"z"}).restore(probe.to_json(), "x"), Error);
}

// A weight moved to Muon starts its momentum from AdamW's first moment; the others keep theirs.
TEST(Criterion, TheSwitchCarriesTheFirstMomentIntoMuonsMomentum) {
  Gpt<float> model(testing::tiny_config(), 2, 8);
  testing::randomize_params(model, 3);
  OptimConfig cfg;
  cfg.routing = "adamw";
  const auto routes = resolve_routing(model.specs(), cfg, "t", nullptr);
  auto adamw = Optimizer::create(routes, param_slots(model), cfg);
  Rng rng(5);
  for (float& g : std::span(model.grads_flat().data<float>(), model.grads_flat().numel()))
    g = float(rng.normal());
  adamw->step(0, 1.0);
  CriterionDecision d;
  d.moved = {"blocks.1.mlp.w2"};
  const OptimConfig decided = decided_config(cfg, d);
  const auto routes2 = resolve_routing(model.specs(), decided, "t", nullptr);
  auto muon = switch_routing(*adamw, routes2, param_slots(model), decided, nullptr, d.moved);
  auto tensor = [](const Optimizer& o, const std::string& name) {
    for (const SafetensorsTensor& t : o.state_tensors())
      if (t.name == name) {
        const float* p = static_cast<const float*>(t.data);
        int64_t n = 1;
        for (int64_t s : t.shape) n *= s;
        return std::vector<float>(p, p + n);
      }
    return std::vector<float>{};
  };
  const auto m = tensor(*adamw, "adamw.m.blocks.1.mlp.w2");
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(tensor(*muon, "muon.buf.blocks.1.mlp.w2"), m);
  EXPECT_TRUE(tensor(*muon, "adamw.v.blocks.1.mlp.w2").empty());
  EXPECT_EQ(tensor(*muon, "adamw.v.blocks.0.mlp.w2"), tensor(*adamw, "adamw.v.blocks.0.mlp.w2"));
  EXPECT_EQ(muon->routes()[size_t(find_param(model.specs(), "blocks.1.mlp.w2"))].optimizer, "muon");
  EXPECT_EQ(routes2[size_t(find_param(model.specs(), "blocks.1.mlp.w2"))].rule, "rules[0]");
}

class CriterionRun : public testing::TinyRunTest {
 protected:
  Result train(const std::string& name, const std::string& extra = "",
               const std::string& env = "") const {
    return testing::run_muongpt("train --config " + config_ + " --set run.name=" + name +
                                    " --set optim.routing=criterion " +
                                    "--set optim.criterion.probe_steps=4 " + extra,
                                env);
  }
  json decision(const std::string& name) const {
    return json::parse(std::ifstream(run_dir(name) / "routing.json"));
  }
  std::vector<double> losses(const std::string& name) const {
    std::vector<double> out;
    for (const json& r : read_jsonl(run_dir(name) / "metrics.jsonl"))
      out.push_back(r["train_loss"]);
    return out;
  }
};

TEST_F(CriterionRun, ThresholdsAboveAndBelowEveryRatio) {
  ASSERT_EQ(train("none", "--set optim.criterion.threshold=1e9").status, 0);
  const json none = decision("none");
  EXPECT_TRUE(none["moved"].empty()) << none;
  ASSERT_EQ(train("all", "--set optim.criterion.threshold=1e-9").status, 0);
  const json all = decision("all");
  size_t measured = 0;
  for (const auto& [name, r] : all["ratios"].items()) measured += r.is_number();
  EXPECT_EQ(measured, all["ratios"].size()) << all;  // every candidate measured by step 4
  EXPECT_EQ(all["moved"].size(), all["ratios"].size()) << all;
  // routing.tsv shows the decided routing; the ratios are the ones ranks.jsonl measured.
  std::ifstream tsv(run_dir("all") / "routing.tsv");
  const std::string routing((std::istreambuf_iterator<char>(tsv)), {});
  EXPECT_NE(routing.find("blocks.1.mlp.w1\t256x64\tmuon"), std::string::npos) << routing;
  double sum = 0;
  int n = 0;
  for (const json& rec : read_jsonl(run_dir("all") / "ranks.jsonl"))
    if (rec["step"].get<int>() <= 4 && rec["weights"]["blocks.0.attn.wo"]["ratio"].is_number())
      sum += rec["weights"]["blocks.0.attn.wo"]["ratio"].get<double>(), ++n;
  EXPECT_NEAR(all["ratios"]["blocks.0.attn.wo"].get<double>(), sum / n, 1e-12);
  // Telemetry ran at every step of the window (every = 2 would skip step 3).
  std::vector<int> steps;
  for (const json& rec : read_jsonl(run_dir("all") / "ranks.jsonl")) steps.push_back(rec["step"]);
  EXPECT_EQ(steps, std::vector<int>({1, 2, 3, 4, 6}));
}

TEST_F(CriterionRun, DeterministicAndResumableOnBothSidesOfTheDecision) {
  ASSERT_EQ(train("whole").status, 0);
  ASSERT_EQ(train("again").status, 0);
  EXPECT_EQ(decision("whole"), decision("again"));
  EXPECT_EQ(losses("whole"), losses("again"));
  // Killed at step 5 (after the decision; checkpoint at 3, before it): the resume decides again,
  // identically, and trains to the same losses.
  Result r = train("before", "", "MUONGPT_FAULT=step:5");
  EXPECT_EQ(r.status, 128 + 9);
  ASSERT_EQ(train("before", "--resume latest").status, 0);
  EXPECT_EQ(decision("before"), decision("whole"));
  EXPECT_EQ(losses("before"), losses("whole"));
  // Resumed from step 6 (after the decision) with two more steps: the decision is kept.
  ASSERT_EQ(train("whole", "--set train.steps=8 --resume latest").status, 0);
  EXPECT_EQ(decision("whole"), decision("again"));
  const Checkpoint ck(latest_checkpoint(run_dir("whole").string()));
  EXPECT_EQ(ck.state()["criterion"]["decision"], decision("again"));
}

TEST_F(CriterionRun, BadConfigsAreOneLine) {
  Result r = train("x", "--set optim.criterion.probe_steps=6");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("[optim.criterion] probe_steps = 6: must be less than [train] steps = 6"),
            std::string::npos)
      << r.out;
  r = train("x", "--set 'optim.criterion.candidates=[\"blocks.*.mlp.w9\"]'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("[optim.criterion] candidates = [\"blocks.*.mlp.w9\"]: match no 2-D"),
            std::string::npos)
      << r.out;
  r = train("x", "--set optim.criterion.base=criterion");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("[optim.criterion] base = \"criterion\""), std::string::npos) << r.out;
}

}  // namespace
}  // namespace muongpt
