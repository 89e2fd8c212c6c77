// The optimizer end to end: parity with torch.optim.AdamW and the reference Muon
// (tools/reference/make_optim_fixtures.py) after every one of 5 steps, checkpoint state round
// trips, update telemetry, counters, the multi-rank plan, and a tiny GPT that learns.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "core/safetensors.h"
#include "model/gpt.h"
#include "optim/optim_testing.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "optim/schedule.h"
#include "optim/update_math.h"
#include "testing/errors.h"
#include "testing/model_util.h"

namespace muongpt {
namespace {

using testing::optim_from_text;

std::string fixture(const std::string& name) {
  return std::string(MUONGPT_SOURCE_DIR) + "/tests/fixtures/" + name;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) out.push_back(item);
  return out;
}

using testing::error_of;

// Parity tolerances, as max |ours − ref| / max |ref_t − initial| per tensor and step: the error
// relative to how far the reference has moved the tensor so far. docs/optim.md explains them:
// AdamW is elementwise with the same operation order as torch, so only a few ulps of the weights
// differ (measured 5e-6); Newton–Schulz runs float32 GEMMs whose summation order is the BLAS's
// (float32 vs float64 NS differ by 1.6e-6 of the update on these matrices; measured 4e-6); the
// exact dualizers compare a float64 Gram eigensolver with a float64 SVD (measured 4e-6).
double tolerance(const Route& r) {
  if (r.optimizer == "adamw") return 2e-5;
  if (r.dualizer.starts_with("ns:")) return 5e-5;
  return 2e-5;
}

struct Measured {
  double worst = 0;
  std::string where;
};

void check_fixture_case(const std::string& file, const std::string& case_name,
                        std::map<std::string, Measured>* by_kind) {
  SafetensorsFile fx(fixture(file));
  const auto names = split(fx.meta("params"), ',');
  const int steps = std::stoi(fx.meta("steps"));
  std::vector<double> lr_scales;
  for (const auto& s : split(fx.meta("lr_scales"), ',')) lr_scales.push_back(std::stod(s));
  ASSERT_EQ(int(lr_scales.size()), steps);

  std::vector<ParamSpec> specs;
  std::vector<std::vector<float>> values, grads;
  for (const auto& n : names) {
    specs.push_back({n, fx.entry("param." + n).shape});
    values.push_back(fx.read<float>("param." + n));
    grads.emplace_back(values.back().size());
  }
  const OptimConfig cfg = optim_from_text(fx.meta(case_name + ".config"));
  std::vector<std::string> warnings;
  const auto routes = resolve_routing(specs, cfg, "fixture", &warnings);
  EXPECT_TRUE(warnings.empty());

  // The routing the C++ config produces is the table the Python side wrote out by hand.
  const auto expected = split(fx.meta(case_name + ".routes"), '\n');
  ASSERT_EQ(expected.size(), names.size() + 1);
  for (size_t i = 0; i < names.size(); ++i) {
    const auto cols = split(expected[i + 1], '\t');
    const Route& r = routes[i];
    EXPECT_EQ(cols[0], r.name);
    EXPECT_EQ(cols[2], r.optimizer) << r.name;
    EXPECT_EQ(cols[3], r.dualizer.empty() ? "-" : r.dualizer) << r.name;
    EXPECT_NEAR(std::stod(cols[4]), r.lr, 1e-15) << r.name;
    EXPECT_NEAR(std::stod(cols[5]), r.scale, 1e-12) << r.name;
    EXPECT_NEAR(std::stod(cols[6]), r.wd, 1e-15) << r.name;
  }

  std::vector<ParamSlot> slots;
  for (size_t i = 0; i < names.size(); ++i)
    slots.push_back({names[i], specs[i].shape, values[i].data(), grads[i].data()});
  auto opt = Optimizer::create(routes, slots, cfg);
  for (int t = 0; t < steps; ++t) {
    for (size_t i = 0; i < names.size(); ++i) {  // in place: the slots point at these buffers
      const auto g = fx.read<float>("grad." + std::to_string(t) + "." + names[i]);
      std::copy(g.begin(), g.end(), grads[i].begin());
    }
    opt->step(t, lr_scales[size_t(t)]);
    for (size_t i = 0; i < names.size(); ++i) {
      const auto ref = fx.read<float>(case_name + ".after." + std::to_string(t) + "." + names[i]);
      const auto init = fx.read<float>("param." + names[i]);
      double num = 0, den = 0;
      for (size_t j = 0; j < ref.size(); ++j) {
        num = std::max(num, std::abs(double(values[i][j]) - ref[j]));
        den = std::max(den, std::abs(double(ref[j]) - init[j]));
      }
      ASSERT_GT(den, 0) << names[i];
      const double err = num / den;
      const Route& r = routes[i];
      EXPECT_LT(err, tolerance(r)) << case_name << " step " << t << " " << names[i] << " ("
                                   << r.optimizer << " " << r.dualizer << ")";
      const std::string kind =
          r.optimizer == "adamw" ? "adamw" : r.dualizer.substr(0, r.dualizer.find(':'));
      Measured& m = (*by_kind)[kind];
      if (err > m.worst || m.where.empty())
        m = {err, case_name + " step " + std::to_string(t) + " " + names[i]};
    }
  }
}

TEST(OptimizerParity, TorchAdamWAndReferenceMuonOverFiveSteps) {
  std::map<std::string, Measured> by_kind;
  check_fixture_case("optim_adamw.safetensors", "adamw", &by_kind);
  for (const char* c : {"muon", "muon_classic", "specgd", "dualizers"})
    check_fixture_case("optim_muon.safetensors", c, &by_kind);
  for (const auto& [kind, m] : by_kind)
    std::printf("  parity %-10s worst relative error %.3g (%s)\n", kind.c_str(), m.worst,
                m.where.c_str());
  EXPECT_EQ(by_kind.size(), 6u);  // adamw, ns, polar, schatten-p, sign, frobenius
}

// A small set of parameters with random gradients, for the state and telemetry tests.
struct Toy : testing::ToyParams {
  explicit Toy(uint64_t seed)
      : ToyParams({{"embed.weight", {16, 8}},
                   {"blocks.0.attn.wq", {8, 8}},
                   {"blocks.0.mlp.w1", {12, 8}},
                   {"blocks.0.attn_norm.weight", {8}},
                   {"head.weight", {16, 8}}},
                  seed) {}
  void fill_grads(uint64_t seed) {
    Rng rng(seed);
    for (auto& g : grads)
      for (float& v : g) v = float(0.01 * rng.normal());
  }
};

TEST(Optimizer, CheckpointStateResumesBitExactly) {
  const OptimConfig cfg;
  Toy a(1);
  const auto routes = resolve_routing(a.specs, cfg, "t", nullptr);
  auto opt_a = Optimizer::create(routes, a.slots(), cfg);
  for (int t = 0; t < 3; ++t) {
    a.fill_grads(100 + t);
    opt_a->step(t, 1.0);
  }
  const auto path = std::filesystem::temp_directory_path() / "muongpt_optim_state.safetensors";
  write_safetensors(path.string(), opt_a->state_tensors());
  const nlohmann::json json = nlohmann::json::parse(opt_a->state_json().dump());
  EXPECT_EQ(json.at("steps_taken"), 3);

  Toy b(999);  // other weights, then the checkpointed ones
  b.values = a.values;
  auto opt_b = Optimizer::create(routes, b.slots(), cfg);
  opt_b->load_state(SafetensorsFile(path.string()), json, path.string());
  EXPECT_EQ(opt_b->state_json(), opt_a->state_json());
  for (int t = 3; t < 6; ++t) {
    a.fill_grads(100 + t);
    b.fill_grads(100 + t);
    opt_a->step(t, 0.5);
    opt_b->step(t, 0.5);
  }
  EXPECT_EQ(a.values, b.values);
  std::filesystem::remove(path);
}

TEST(Optimizer, LoadStateRefusesMismatches) {
  OptimConfig cfg;
  Toy a(2);
  const auto routes = resolve_routing(a.specs, cfg, "t", nullptr);
  auto opt = Optimizer::create(routes, a.slots(), cfg);
  a.fill_grads(3);
  opt->step(0, 1.0);
  const auto dir = std::filesystem::temp_directory_path();
  const std::string good = (dir / "muongpt_optim_good.safetensors").string();
  write_safetensors(good, opt->state_tensors());
  const nlohmann::json json = opt->state_json();

  // The routing changed: wq is AdamW now.
  OptimConfig other;
  other.rules = {"blocks.0.attn.wq = adamw"};
  auto routes2 = resolve_routing(a.specs, other, "t", nullptr);
  auto opt2 = Optimizer::create(routes2, a.slots(), other);
  EXPECT_EQ(error_of([&] { opt2->load_state(SafetensorsFile(good), json, "ckpt"); }),
            "ckpt: parameter 'blocks.0.attn.wq' was trained with muon but the routing now sends "
            "it to adamw (its optimizer state cannot carry over)");

  // A tensor missing, one with the wrong shape, one unexpected, one of the wrong dtype.
  auto tensors = opt->state_tensors();
  std::vector<SafetensorsTensor> missing(tensors.begin() + 1, tensors.end());
  const std::string p_missing = (dir / "muongpt_optim_missing.safetensors").string();
  write_safetensors(p_missing, missing);
  EXPECT_EQ(error_of([&] { opt->load_state(SafetensorsFile(p_missing), json, "ckpt"); }),
            "ckpt: missing optimizer tensor 'adamw.m.embed.weight'");

  std::vector<float> junk(16 * 8, 0.0f);
  auto wrong = tensors;
  wrong[0].shape = {8, 16};
  const std::string p_shape = (dir / "muongpt_optim_shape.safetensors").string();
  write_safetensors(p_shape, wrong);
  EXPECT_EQ(error_of([&] { opt->load_state(SafetensorsFile(p_shape), json, "ckpt"); }),
            "ckpt: optimizer tensor 'adamw.m.embed.weight' has shape [8, 16], the parameter has "
            "[16, 8]");

  auto extra = tensors;
  extra.push_back({"muon.buf.embed.weight", DType::f32, {16, 8}, junk.data()});
  extra.push_back({"loader.position", DType::f32, {16, 8}, junk.data()});  // not ours: ignored
  const std::string p_extra = (dir / "muongpt_optim_extra.safetensors").string();
  write_safetensors(p_extra, extra);
  EXPECT_EQ(error_of([&] { opt->load_state(SafetensorsFile(p_extra), json, "ckpt"); }),
            "ckpt: unexpected optimizer tensor 'muon.buf.embed.weight' (the routing or model "
            "differs)");

  std::vector<double> dbl(16 * 8, 0.0);
  auto f64 = tensors;
  f64[0] = {"adamw.m.embed.weight", DType::f64, {16, 8}, dbl.data()};
  const std::string p_f64 = (dir / "muongpt_optim_f64.safetensors").string();
  write_safetensors(p_f64, f64);
  EXPECT_EQ(error_of([&] { opt->load_state(SafetensorsFile(p_f64), json, "ckpt"); }),
            "ckpt: optimizer tensor 'adamw.m.embed.weight' is F64, expected F32");

  nlohmann::json bad = json;
  bad["format"] = "something-else";
  EXPECT_NE(error_of([&] {
              opt->load_state(SafetensorsFile(good), bad, "ckpt");
            }).find("ckpt: optimizer state: format \"something-else\""),
            std::string::npos);
  bad = json;
  bad.erase("params");
  EXPECT_NE(error_of([&] {
              opt->load_state(SafetensorsFile(good), bad, "ckpt");
            }).find("ckpt: optimizer state JSON: "),
            std::string::npos);
  for (const auto& p : {good, p_missing, p_shape, p_extra, p_f64}) std::filesystem::remove(p);
}

TEST(Optimizer, RecordsTheAppliedUpdateAndCountsDualizerCalls) {
  OptimConfig cfg;
  cfg.muon.wd = 0.1;
  Toy toy(4);
  const auto routes = resolve_routing(toy.specs, cfg, "t", nullptr);
  auto opt = Optimizer::create(routes, toy.slots(), cfg);
  toy.fill_grads(5);
  opt->step(0, 1.0);
  EXPECT_TRUE(opt->last_update(0).empty());  // off by default
  EXPECT_EQ(opt->dualize_calls(), 2);        // wq and w1
  EXPECT_EQ(opt->last_step_stats().adamw_params, 3);
  EXPECT_DOUBLE_EQ(opt->last_step_stats().muon_momentum, 0.85);

  opt->set_record_updates(true);
  const auto before = toy.values;
  toy.fill_grads(6);
  opt->step(1, 0.8);
  for (size_t i = 0; i < toy.values.size(); ++i) {
    auto u = opt->last_update(i);
    ASSERT_EQ(u.size(), toy.values[i].size());
    double norm = 0;
    for (size_t j = 0; j < u.size(); ++j) {
      EXPECT_EQ(u[j], toy.values[i][j] - before[i][j]);
      norm += double(u[j]) * u[j];
    }
    EXPECT_GT(norm, 0) << toy.specs[i].name;
  }
  // A Muon update is lr·scale·O plus the decay: for NS5 its singular values are lr·scale times
  // the band [0.6, 1.25] (and the decay term, lr·wd·W, is small here).
  const auto sv = singular_values(opt->last_update(1).data(), 8, 8);
  const double lr = 0.05 * 0.8;
  EXPECT_GT(sv.back(), 0.5 * lr);
  EXPECT_LT(sv.front(), 1.3 * lr);
  EXPECT_EQ(opt->last_step_stats().step, 1);
  EXPECT_EQ(opt->last_step_stats().lr_scale, 0.8);
}

// The Muon matrices are updated concurrently (parallel_tasks: whole matrices on the workers,
// single-threaded BLAS, scratch per worker), bit-identically to one at a time in order.
TEST(Optimizer, ConcurrentMuonUpdatesEqualOneAtATime) {
  const OptimConfig cfg;
  testing::ToyParams toy({{"blocks.0.attn.wq", {24, 24}},
                          {"blocks.0.mlp.w1", {48, 24}},
                          {"blocks.0.mlp.w2", {24, 48}},
                          {"blocks.1.attn.wq", {24, 24}},
                          {"blocks.1.mlp.w1", {48, 24}}},
                         8);
  const auto routes = resolve_routing(toy.specs, cfg, "t", nullptr);
  auto opt = Optimizer::create(routes, toy.slots(), cfg);
  auto want = toy.values;
  std::vector<std::vector<float>> buf;
  for (const auto& v : toy.values) buf.emplace_back(v.size(), 0.0f);
  const int blas = blas_threads();
  for (int t = 0; t < 3; ++t) {
    Rng rng(90 + t);
    for (auto& g : toy.grads)
      for (float& v : g) v = float(0.01 * rng.normal());
    opt->step(t, 0.9);
    const double mu = opt->last_step_stats().muon_momentum;
    set_blas_threads(1);
    for (size_t i = 0; i < routes.size(); ++i) {
      const auto& g = toy.grads[i];
      std::vector<float> u(g.size());
      for (size_t j = 0; j < u.size(); ++j)
        u[j] = muon_momentum_element(g[j], buf[i][j], float(mu), float(1.0 - mu), true, true);
      dualize(testing::spec(routes[i].dualizer), u.data(), u.data(), toy.specs[i].shape[0],
              toy.specs[i].shape[1]);
      const MuonConsts k = muon_consts(routes[i].lr * 0.9, routes[i].wd, routes[i].scale);
      for (size_t j = 0; j < u.size(); ++j)
        want[i][j] = muon_apply_element(want[i][j], u[j], k.decay, k.step);
    }
    set_blas_threads(blas);
    for (size_t i = 0; i < routes.size(); ++i)
      EXPECT_EQ(toy.values[i], want[i]) << routes[i].name << " step " << t;
  }
  EXPECT_EQ(opt->dualize_calls(), 5);
}

// memory_bytes() counts the state (AdamW: two moments per element; Muon: one buffer) and grows
// by the ΔW buffers once recording has been used.
TEST(Optimizer, ReportsTheMemoryItHolds) {
  OptimConfig cfg;
  Toy toy(4);
  const auto routes = resolve_routing(toy.specs, cfg, "t", nullptr);
  auto opt = Optimizer::create(routes, toy.slots(), cfg);
  size_t state = 0, all = 0;
  for (size_t i = 0; i < routes.size(); ++i) {
    const size_t n = toy.values[i].size();
    state += (routes[i].optimizer == "muon" ? 1 : 2) * n * sizeof(float);
    all += n * sizeof(float);
  }
  const size_t before = opt->memory_bytes();
  EXPECT_GE(before, state);
  EXPECT_LT(before, state + 64 * 1024);  // plus scratch the size of the largest matrix
  opt->set_record_updates(true);
  toy.fill_grads(1);
  opt->step(0, 1.0);
  EXPECT_GE(opt->memory_bytes(), before + all);
}

TEST(Optimizer, CreateChecksRoutesAgainstSlots) {
  const OptimConfig cfg;
  Toy toy(7);
  auto routes = resolve_routing(toy.specs, cfg, "t", nullptr);
  auto slots = toy.slots();
  std::swap(routes[0], routes[1]);
  EXPECT_NE(error_of([&] { Optimizer::create(routes, slots, cfg); })
                .find("optim: parameter 0 is 'embed.weight' but route 0 is for "
                      "'blocks.0.attn.wq'"),
            std::string::npos);
  std::swap(routes[0], routes[1]);
  slots[2].device = Device::cuda;
  EXPECT_NE(error_of([&] { Optimizer::create(routes, slots, cfg); }).find("CUDA optimizer"),
            std::string::npos);
  slots.pop_back();
  EXPECT_EQ(error_of([&] { Optimizer::create(routes, slots, cfg); }),
            "optim: 5 routes for 4 parameters");
}

TEST(Optimizer, MultiRankPlanSpreadsEveryShapeGroup) {
  const auto routes = resolve_routing(param_specs(ModelConfig{}), OptimConfig{}, "t", nullptr);
  for (int world : {1, 3, 4, 5, 8}) {
    const auto owner = muon_owner_ranks(routes, world);
    std::vector<int> count(size_t(world), 0);
    std::map<std::vector<int64_t>, std::vector<int>> per_shape(
        {{{768, 768}, std::vector<int>(size_t(world), 0)},
         {{3072, 768}, std::vector<int>(size_t(world), 0)},
         {{768, 3072}, std::vector<int>(size_t(world), 0)}});
    for (size_t i = 0; i < routes.size(); ++i) {
      if (routes[i].optimizer != "muon") {
        EXPECT_EQ(owner[i], -1);
        continue;
      }
      ASSERT_GE(owner[i], 0);
      ASSERT_LT(owner[i], world);
      ++count[size_t(owner[i])];
      ++per_shape[routes[i].shape][size_t(owner[i])];
    }
    const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    EXPECT_LE(*hi - *lo, 1) << "world " << world;
    for (const auto& [shape, c] : per_shape) {
      const auto [a, b] = std::minmax_element(c.begin(), c.end());
      EXPECT_LE(*b - *a, 1) << "world " << world;  // each shape group spread evenly
    }
  }
}

// The whole path on the real model: a tiny GPT memorises one batch under every optimizer mix.
TEST(Optimizer, TinyGptLearnsUnderEveryPreset) {
  const ModelConfig mc = testing::tiny_config();
  const int64_t B = 4, T = 16;
  Rng rng(11);
  std::vector<int32_t> idx(size_t(B * T)), targets(size_t(B * T));
  for (auto& v : idx) v = int32_t(rng.below(96));
  for (size_t i = 0; i < idx.size(); ++i) targets[i] = idx[(i + 1) % idx.size()];

  for (const std::string& preset : routing_presets()) {
    Gpt<float> model(mc, B, T);
    model.init_params(3);
    OptimConfig cfg;
    cfg.routing = preset;
    const auto routes = resolve_routing(model.specs(), cfg, "t", nullptr);
    auto opt = Optimizer::create(routes, param_slots(model), cfg);
    float first = 0, last = 0;
    for (int t = 0; t < 40; ++t) {
      model.zero_grads();
      const float loss = model.forward(idx.data(), targets.data());
      model.backward();
      opt->step(t, lr_multiplier(ScheduleConfig{}, t, 40));
      if (t == 0) first = loss;
      last = loss;
      ASSERT_TRUE(std::isfinite(loss)) << preset << " step " << t;
    }
    std::printf("  %-14s loss %.3f -> %.3f over 40 steps\n", preset.c_str(), first, last);
    EXPECT_LT(last, 0.5f * first) << preset;
  }
}

}  // namespace
}  // namespace muongpt
