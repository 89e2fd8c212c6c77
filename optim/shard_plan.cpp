#include "optim/shard_plan.h"

#include <algorithm>

#include "core/comm.h"
#include "core/dtype.h"
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

std::vector<SegmentCopy> gradients_to_blocks(const ShardPlan& plan,
                                             const std::vector<ShardTensors>& t, float* blocks) {
  std::vector<SegmentCopy> out;
  for (int r = 0; r < plan.world; ++r)
    for (const ShardSegment& s : plan.by_rank[size_t(r)])
      out.push_back({t[s.param].grad + s.begin, blocks + r * plan.count + s.offset, s.size()});
  return out;
}

std::vector<SegmentCopy> gradients_from_blocks(const ShardPlan& plan,
                                               const std::vector<ShardTensors>& t,
                                               const float* blocks, int rank) {
  std::vector<SegmentCopy> out;
  for (int r = 0; r < plan.world; ++r) {
    if (rank >= 0 && r != rank) continue;
    const float* block = rank >= 0 ? blocks : blocks + r * plan.count;
    for (const ShardSegment& s : plan.by_rank[size_t(r)])
      out.push_back({block + s.offset, t[s.param].grad + s.begin, s.size()});
  }
  return out;
}

std::vector<SegmentCopy> values_to_block(const ShardPlan& plan, const std::vector<ShardTensors>& t,
                                         int rank, float* block) {
  std::vector<SegmentCopy> out;
  for (const ShardSegment& s : plan.by_rank[size_t(rank)])
    out.push_back({t[s.param].value + s.begin, block + s.offset, s.size()});
  return out;
}

std::vector<SegmentCopy> values_from_blocks(const ShardPlan& plan,
                                            const std::vector<ShardTensors>& t,
                                            const float* gathered, int rank) {
  std::vector<SegmentCopy> out;
  for (int r = 0; r < plan.world; ++r) {
    if (r == rank) continue;
    for (const ShardSegment& s : plan.by_rank[size_t(r)]) {
      const ShardTensors& p = t[s.param];
      out.push_back({gathered + r * plan.count + s.offset, p.value + s.begin, s.size(),
                     p.delta ? p.delta + s.begin : nullptr,
                     p.working ? p.working + s.begin : nullptr});
    }
  }
  return out;
}

void run_copies(const std::vector<SegmentCopy>& copies, float scale, bool record) {
  for (const SegmentCopy& c : copies)
    for (int64_t j = 0; j < c.n; ++j) {
      const float v = scale == 1.0f ? c.src[j] : c.src[j] * scale;
      if (record && c.delta) c.delta[j] = v - c.dst[j];
      c.dst[j] = v;
      if (c.working) c.working[j] = float_to_bf16(v);
    }
}

std::vector<std::vector<float>> gather_state(const ShardPlan& plan, int rank, Comm& comm,
                                             const std::vector<StatePiece>& mine) {
  // Each rank's block holds, per segment in order, m then v (AdamW) or buf (Muon).
  auto block_size = [&](int r) {
    int64_t n = 0;
    for (const ShardSegment& s : plan.by_rank[size_t(r)])
      n += mine[s.param].muon ? s.size() : 2 * s.size();
    return n;
  };
  int64_t count = 0;
  for (int r = 0; r < plan.world; ++r) count = std::max(count, block_size(r));
  std::vector<float> send(size_t(count), 0.0f), recv(size_t(count * plan.world));
  int64_t at = 0;
  for (const ShardSegment& s : plan.by_rank[size_t(rank)]) {
    const StatePiece& p = mine[s.param];
    for (std::span<const float> part : {p.m, p.v, p.buf}) {
      MG_CHECK(at + int64_t(part.size()) <= count, "state piece beyond its block");
      std::copy(part.begin(), part.end(), send.begin() + at);
      at += int64_t(part.size());
    }
  }
  comm.host_all_gather(send.data(), recv.data(), count * int64_t(sizeof(float)));
  std::vector<std::vector<float>> whole(mine.size());
  for (int r = 0; r < plan.world; ++r) {
    const float* block = recv.data() + r * count;
    for (const ShardSegment& s : plan.by_rank[size_t(r)]) {
      const StatePiece& p = mine[s.param];
      std::vector<float>& w = whole[s.param];
      w.resize(size_t(p.numel * (p.muon ? 1 : 2)));
      if (p.muon) {
        std::copy(block, block + p.numel, w.begin());
        block += p.numel;
      } else {
        std::copy(block, block + s.size(), w.begin() + s.begin);
        std::copy(block + s.size(), block + 2 * s.size(), w.begin() + p.numel + s.begin);
        block += 2 * s.size();
      }
    }
  }
  return whole;
}

}  // namespace muongpt
