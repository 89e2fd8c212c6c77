// The sharded optimizer (optim/shard_plan.h) with ranks as threads of this process
// (tests/testing/thread_comm.h): N ranks, each with its own copy of the parameters and its own
// gradients, must train exactly like one rank fed the average of their gradients. The mpi tests
// check the same through the trainer under mpirun; this one runs in every build and looks at
// every element, every step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "core/rng.h"
#include "optim/optim_testing.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "optim/shard_plan.h"
#include "testing/thread_comm.h"

namespace muongpt {
namespace {

using testing::on_rank_threads;
using testing::ThreadComm;
using testing::ThreadGroup;
using testing::ToyParams;

constexpr int kSteps = 4;

// Two blocks (so each Muon shape group has two members), a gain, an embedding and a head whose
// sizes do not divide by 2 or 3 (uneven AdamW pieces).
std::vector<ParamSpec> sharded_specs() {
  return {{"embed.weight", {17, 8}},          {"blocks.0.attn.wq", {8, 8}},
          {"blocks.0.mlp.w1", {12, 8}},       {"blocks.0.attn_norm.weight", {8}},
          {"blocks.1.attn.wq", {8, 8}},       {"blocks.1.mlp.w1", {12, 8}},
          {"blocks.1.attn_norm.weight", {8}}, {"head.weight", {17, 8}}};
}

// Rank r's gradients at step s.
std::vector<std::vector<float>> rank_grads(const std::vector<ParamSpec>& specs, int s, int r) {
  Rng rng(uint64_t(1000 * s + r + 1));
  std::vector<std::vector<float>> g;
  for (const ParamSpec& p : specs) {
    g.emplace_back(size_t(p.numel()));
    for (float& v : g.back()) v = float(0.01 * rng.normal());
  }
  return g;
}

// What one rank sees after each step of the reference run.
struct Reference {
  std::vector<std::vector<std::vector<float>>> values, grads;  // [step][param]
  std::vector<double> norms;
  std::vector<std::vector<float>> state;  // final state tensors, flattened
  std::vector<std::string> state_names;
  nlohmann::json state_json;
  int64_t dualize_calls = 0;
};

// One rank, fed the ranks' average ((g_0 + g_1) + g_2 …) · (1/world): the sum the collectives
// form, in rank order, then the optimizer's scaling.
Reference run_reference(const std::vector<Route>& routes, const OptimConfig& cfg, int world) {
  ToyParams t(sharded_specs(), 5);
  auto opt = Optimizer::create(routes, t.slots(), cfg);
  Reference ref;
  for (int s = 0; s < kSteps; ++s) {
    for (int r = 0; r < world; ++r) {
      const auto g = rank_grads(t.specs, s, r);
      for (size_t i = 0; i < g.size(); ++i)
        for (size_t j = 0; j < g[i].size(); ++j)
          t.grads[i][j] = r == 0 ? g[i][j] : t.grads[i][j] + g[i][j];
    }
    for (auto& g : t.grads)
      for (float& v : g) v *= 1.0f / float(world);
    ref.norms.push_back(opt->reduce_gradients(false));
    ref.grads.push_back(t.grads);
    opt->step(s, 1.0 - 0.1 * s);
    ref.values.push_back(t.values);
  }
  for (const SafetensorsTensor& st : opt->state_tensors()) {
    const auto* f = static_cast<const float*>(st.data);
    int64_t n = 1;
    for (int64_t d : st.shape) n *= d;
    ref.state.emplace_back(f, f + n);
    ref.state_names.push_back(st.name);
  }
  ref.state_json = opt->state_json();
  ref.dualize_calls = opt->dualize_calls();
  return ref;
}

TEST(ShardedOptimizer, RanksOnThreadsTrainLikeOneRankOnTheAverage) {
  OptimConfig cfg;
  cfg.adamw.wd = 0.05;
  cfg.muon.wd = 0.05;
  const auto routes = resolve_routing(sharded_specs(), cfg, "t", nullptr);
  for (int world : {2, 3}) {
    SCOPED_TRACE("world " + std::to_string(world));
    const Reference ref = run_reference(routes, cfg, world);
    const ShardPlan plan = make_shard_plan(routes, world);
    ThreadGroup group(world);
    on_rank_threads(world, [&](int rank) {
      ThreadComm comm(group, rank);
      ToyParams t(sharded_specs(), 5);
      auto opt = Optimizer::create(routes, t.slots(), cfg, &comm);
      opt->set_record_updates(true);
      int64_t calls = 0;
      for (int s = 0; s < kSteps; ++s) {
        const auto g = rank_grads(t.specs, s, rank);
        for (size_t i = 0; i < g.size(); ++i)  // in place: the slots point into t.grads
          std::copy(g[i].begin(), g[i].end(), t.grads[i].begin());
        const bool everywhere = s % 2 == 1;  // both paths: reduce-scatter and all-reduce
        const double norm = opt->reduce_gradients(everywhere);
        EXPECT_NEAR(norm, ref.norms[size_t(s)], 1e-12 * ref.norms[size_t(s)]);
        for (size_t i = 0; i < t.grads.size(); ++i) {
          const ShardSegment mine = plan.segment(i, rank);
          for (int64_t j = 0; j < int64_t(t.grads[i].size()); ++j)
            if (everywhere || (j >= mine.begin && j < mine.end))
              ASSERT_EQ(t.grads[i][size_t(j)], ref.grads[size_t(s)][i][size_t(j)])
                  << "rank " << rank << " step " << s << " " << t.specs[i].name << " " << j;
        }
        const auto before = t.values;
        opt->step(s, 1.0 - 0.1 * s);
        calls += opt->dualize_calls();
        for (size_t i = 0; i < t.values.size(); ++i) {
          EXPECT_EQ(t.values[i], ref.values[size_t(s)][i])
              << "rank " << rank << " step " << s << " " << t.specs[i].name;
          // ΔW of every element, the segments other ranks updated included.
          const std::span<const float> u = opt->last_update(i);
          ASSERT_EQ(u.size(), t.values[i].size());
          for (size_t j = 0; j < u.size(); ++j)
            ASSERT_EQ(u[j], t.values[i][j] - before[i][j])
                << "rank " << rank << " " << t.specs[i].name << " " << j;
        }
      }
      // Each Muon matrix dualized by exactly one rank.
      EXPECT_EQ(comm.sum(double(calls)), double(kSteps * ref.dualize_calls));
      EXPECT_LT(calls, kSteps * ref.dualize_calls);
      // The gathered checkpoint state is the one-rank state, on every rank.
      const auto state = opt->state_tensors();
      ASSERT_EQ(state.size(), ref.state.size());
      for (size_t k = 0; k < state.size(); ++k) {
        EXPECT_EQ(state[k].name, ref.state_names[k]);
        const auto* f = static_cast<const float*>(state[k].data);
        EXPECT_EQ(std::vector<float>(f, f + ref.state[k].size()), ref.state[k])
            << "rank " << rank << " " << state[k].name;
      }
      EXPECT_EQ(opt->state_json(), ref.state_json);
    });
  }
}

// The copy lists cover every element of every parameter exactly once per direction, and the
// blocks never overlap.
TEST(ShardedOptimizer, CopyListsCoverEveryElementOnce) {
  const auto routes = resolve_routing(sharded_specs(), OptimConfig{}, "t", nullptr);
  for (int world : {1, 2, 3, 5}) {
    const ShardPlan plan = make_shard_plan(routes, world);
    ToyParams t(sharded_specs(), 1);
    std::vector<ShardTensors> tensors;
    for (size_t i = 0; i < t.specs.size(); ++i)
      tensors.push_back({t.values[i].data(), t.grads[i].data()});
    std::vector<float> blocks(size_t(plan.count * world), 0.0f);
    // Mark every gradient element with its identity, pack, check each block slot once.
    for (size_t i = 0; i < t.grads.size(); ++i)
      for (size_t j = 0; j < t.grads[i].size(); ++j) t.grads[i][j] = float(i * 1000 + j + 1);
    run_copies(gradients_to_blocks(plan, tensors, blocks.data()), 1.0f);
    size_t filled = 0, total = 0;
    for (float v : blocks) filled += v != 0;
    for (const auto& g : t.grads) total += g.size();
    EXPECT_EQ(filled, total) << "world " << world;
    // Back again, scaled: every element exactly twice its mark.
    run_copies(gradients_from_blocks(plan, tensors, blocks.data(), -1), 2.0f);
    for (size_t i = 0; i < t.grads.size(); ++i)
      for (size_t j = 0; j < t.grads[i].size(); ++j)
        ASSERT_EQ(t.grads[i][j], 2.0f * float(i * 1000 + j + 1)) << world << " " << i << " " << j;
    // Values: each rank's own block plus every other rank's segments rebuild the whole tensor.
    for (int rank = 0; rank < world; ++rank) {
      std::vector<float> gathered(size_t(plan.count * world), 0.0f);
      for (int r = 0; r < world; ++r)
        run_copies(values_to_block(plan, tensors, r, &gathered[size_t(r * plan.count)]), 1.0f);
      ToyParams other(sharded_specs(), 2);  // different values: every element must be replaced
      std::vector<ShardTensors> o;
      for (size_t i = 0; i < other.specs.size(); ++i) {
        for (const ShardSegment& s : plan.by_rank[size_t(rank)])  // its own part is already right
          if (s.param == i)
            std::copy(t.values[i].begin() + s.begin, t.values[i].begin() + s.end,
                      other.values[i].begin() + s.begin);
        o.push_back({other.values[i].data(), other.grads[i].data()});
      }
      run_copies(values_from_blocks(plan, o, gathered.data(), rank), 1.0f);
      EXPECT_EQ(other.values, t.values) << "world " << world << " rank " << rank;
    }
  }
}

}  // namespace
}  // namespace muongpt
