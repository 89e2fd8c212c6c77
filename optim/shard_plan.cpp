#include "optim/shard_plan.h"

#include <algorithm>

#include "core/error.h"
#include "optim/optimizer.h"

namespace muongpt {

ShardSegment ShardPlan::segment(size_t param, int rank) const {
  for (const ShardSegment& s : by_rank[size_t(rank)])
    if (s.param == param) return s;
  return {param, 0, 0, 0};
}

ShardPlan make_shard_plan(const std::vector<Route>& routes, int world) {
  MG_CHECK(world >= 1, "world size ", world);
  ShardPlan plan;
  plan.world = world;
  plan.by_rank.resize(size_t(world));
  const std::vector<int> muon_owner = muon_owner_ranks(routes, world);
  std::vector<int64_t> used(size_t(world), 0);
  auto add = [&](int rank, size_t param, int64_t begin, int64_t end) {
    if (end <= begin) return;
    plan.by_rank[size_t(rank)].push_back({param, begin, end, used[size_t(rank)]});
    used[size_t(rank)] += end - begin;
  };
  for (size_t i = 0; i < routes.size(); ++i) {
    int64_t n = 1;
    for (int64_t s : routes[i].shape) n *= s;
    if (muon_owner[i] >= 0) {
      add(muon_owner[i], i, 0, n);
    } else {
      for (int r = 0; r < world; ++r) add(r, i, n * r / world, n * (r + 1) / world);
    }
  }
  plan.count = *std::max_element(used.begin(), used.end());
  return plan;
}

}  // namespace muongpt
