// How the ranks of a data-parallel run divide the optimizer's work (ZeRO-1 for AdamW, one owner
// per matrix for Muon):
//   - every Muon matrix belongs to one rank, muon_owner_ranks(): that rank receives its averaged
//     gradient, keeps its momentum buffer and runs its dualizer;
//   - every AdamW tensor is cut into `world` contiguous pieces, piece r to rank r (elements
//     [r·n/world, (r+1)·n/world)): each rank keeps the moments of its pieces only.
// A rank's segments, in parameter order, form its block of `count` elements (padded to the
// largest rank's total) in the buffers the collectives move: gradients are packed by rank and
// reduce-scattered (each rank receives the sums of its own segments), updated values are packed
// into the rank's block and all-gathered. The plan is the same on every rank.
#pragma once

#include <cstdint>
#include <vector>

#include "optim/routing.h"

namespace muongpt {

struct ShardSegment {
  size_t param;        // index into the routes
  int64_t begin, end;  // element range of that parameter
  int64_t offset;      // where it sits in its rank's block
  int64_t size() const { return end - begin; }
};

struct ShardPlan {
  int world = 1;
  std::vector<std::vector<ShardSegment>> by_rank;  // [world] segments, parameter order
  int64_t count = 0;  // elements per rank block (the largest rank's total)

  // This parameter's segment on `rank`, or an empty one ([0, 0)) when it has none.
  ShardSegment segment(size_t param, int rank) const;
};

// Every route's element count is the product of its shape.
ShardPlan make_shard_plan(const std::vector<Route>& routes, int world);

}  // namespace muongpt
