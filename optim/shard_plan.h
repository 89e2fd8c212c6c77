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
#include <span>
#include <vector>

#include "optim/routing.h"
#include "optim/segment_copy.h"

namespace muongpt {

class Comm;

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

// The exchanges, as lists of contiguous copies (SegmentCopy, optim/segment_copy.h) between the
// parameters and the rank blocks. Both optimizers build them from the same plan: the CPU one
// runs them with run_copies(), the CUDA one with one kernel over the same list.
//
// Where parameter i lives in the optimizer's memory (host or device pointers, whole tensors).
struct ShardTensors {
  float* value = nullptr;
  float* grad = nullptr;
  uint16_t* working = nullptr;  // bf16 working copy, or null
  float* delta = nullptr;       // where its ΔW is recorded, or null
};

// Every rank's gradient segments into `blocks` [world, count] (the reduce-scatter's input).
std::vector<SegmentCopy> gradients_to_blocks(const ShardPlan& plan,
                                             const std::vector<ShardTensors>& t, float* blocks);
// Reduced gradients back into the parameters' gradients: rank `rank`'s own segments from its
// block [count] (the reduce-scatter's output), or, with rank = −1, every rank's segments from the
// all-reduced blocks [world, count].
std::vector<SegmentCopy> gradients_from_blocks(const ShardPlan& plan,
                                               const std::vector<ShardTensors>& t,
                                               const float* blocks, int rank);
// Rank `rank`'s updated value segments into its block [count] (the all-gather's input).
std::vector<SegmentCopy> values_to_block(const ShardPlan& plan, const std::vector<ShardTensors>& t,
                                         int rank, float* block);
// Every other rank's value segments from the gathered blocks [world, count] into the values,
// with the working copy and ΔW where `t` has them.
std::vector<SegmentCopy> values_from_blocks(const ShardPlan& plan,
                                            const std::vector<ShardTensors>& t,
                                            const float* gathered, int rank);
// The copies on the host; ΔW is written only when `record` (as the CUDA kernel does).
void run_copies(const std::vector<SegmentCopy>& copies, float scale, bool record = false);

// One rank's optimizer state for one parameter, over its segment: AdamW's moments m and v (the
// segment's elements), or a Muon matrix's whole momentum buffer (owner only; empty elsewhere).
struct StatePiece {
  bool muon = false;
  int64_t numel = 0;  // the parameter's
  std::span<const float> m, v, buf;
};
// Collective (host memory, any communicator): every rank's pieces to every rank, assembled per
// parameter into the whole state: m then v ([2 · numel], AdamW) or buf ([numel], Muon).
std::vector<std::vector<float>> gather_state(const ShardPlan& plan, int rank, Comm& comm,
                                             const std::vector<StatePiece>& mine);

}  // namespace muongpt
