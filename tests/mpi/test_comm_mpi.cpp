// Run under mpirun (CTest label `mpi`, 2 and 4 ranks): the MPI communicator's collectives, the
// staged communicator over it ([device] comm = "mpi" for CUDA ranks) with a stand-in device, and
// the multi-rank optimizer against the one-process optimizer fed the averaged gradients.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/comm.h"
#include "core/comm_staged.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "optim/optim_testing.h"
#include "optim/optimizer.h"
#include "optim/routing.h"
#include "optim/shard_plan.h"
#include "testing/errors.h"

namespace muongpt {
namespace {

Comm& world() {
  static std::unique_ptr<Comm> comm = [] {
    RankInfo info = discover_ranks({});
    return make_mpi_comm(info, 120);
  }();
  return *comm;
}

TEST(MpiComm, RanksAgreeWithTheLauncher) {
  Comm& c = world();
  const RankInfo info = discover_ranks({});
  EXPECT_EQ(info.source, "openmpi");
  EXPECT_EQ(c.rank(), info.rank);
  EXPECT_EQ(c.world(), info.world);
  EXPECT_GE(c.world(), 2) << "run this test under mpirun -np 2 or more";
  EXPECT_EQ(c.backend(), "mpi");
}

TEST(MpiComm, CollectivesMoveTheRightNumbers) {
  Comm& c = world();
  const int r = c.rank(), n = c.world();
  // all_reduce in three types, an odd length
  std::vector<float> f(7);
  std::vector<double> d(7);
  std::vector<int64_t> k(7);
  for (int i = 0; i < 7; ++i) f[i] = float(r + i), d[i] = 0.5 * r + i, k[i] = int64_t(r) << 33;
  c.all_reduce_sum(f.data(), 7, DType::f32);
  c.all_reduce_sum(d.data(), 7, DType::f64);
  c.all_reduce_sum(k.data(), 7, DType::i64);
  const int rsum = n * (n - 1) / 2;
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(f[i], float(rsum + n * i));
    EXPECT_EQ(d[i], 0.5 * rsum + n * i);
    EXPECT_EQ(k[i], int64_t(rsum) << 33);
  }
  // reduce_scatter: block b of rank r holds 100·b + r; rank r receives Σ_ranks (100·r + q)
  const int64_t count = 5;
  std::vector<float> send(static_cast<size_t>(count * n)), recv(static_cast<size_t>(count));
  for (int b = 0; b < n; ++b)
    for (int64_t j = 0; j < count; ++j) send[size_t(b * count + j)] = float(100 * b + r + j);
  c.reduce_scatter_sum(send.data(), recv.data(), count, DType::f32);
  for (int64_t j = 0; j < count; ++j) EXPECT_EQ(recv[j], float(n * (100 * r + j) + rsum));
  // all_gather: block q is rank q's
  std::vector<float> mine(3, float(r)), all(size_t(3 * n));
  c.all_gather(mine.data(), all.data(), 3, DType::f32);
  for (int q = 0; q < n; ++q)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(all[size_t(q * 3 + j)], float(q));
  // broadcast from the last rank
  std::vector<double> b(4, double(r));
  c.broadcast(b.data(), 4, DType::f64, n - 1);
  for (double x : b) EXPECT_EQ(x, double(n - 1));
  c.barrier();
  EXPECT_EQ(c.sum(double(r)), double(rsum));
  EXPECT_TRUE(c.any(r == n - 1));
  EXPECT_FALSE(c.any(false));
}

TEST(MpiComm, GathersStringsOfDifferentLengths) {
  Comm& c = world();
  const std::string mine(size_t(3 * c.rank()), char('a' + c.rank()));  // rank 0: empty
  const std::vector<std::string> all = c.all_gather_strings(mine);
  ASSERT_EQ(int(all.size()), c.world());
  for (int q = 0; q < c.world(); ++q)
    EXPECT_EQ(all[size_t(q)], std::string(size_t(3 * q), char('a' + q)));
}

// A stand-in GPU for the staged communicator: "device" memory is host memory, and what is queued
// on a stream (copies, the test's "kernels") runs only when that stream, or the whole device, is
// synchronised, as a GPU may run it any time later. So a collective that handed MPI its host
// buffer before waiting for the copy, or copied on another stream than the caller's, or returned
// before its result landed, sees or leaves stale values. New host memory is filled with 0xCD.
class FakeDevice final : public StagingDevice {
 public:
  struct Counts {
    int allocations = 0;
    size_t allocated_bytes = 0;  // the latest allocation
    int copies = 0;
    std::set<CudaStream> copy_streams;
  };
  Counts counts;

  // A "kernel" on `stream`.
  void enqueue(CudaStream stream, std::function<void()> work) {
    queues_[stream].push_back(std::move(work));
  }
  void* allocate_host(size_t bytes) override {
    ++counts.allocations;
    counts.allocated_bytes = bytes;
    char* p = new char[bytes];
    std::memset(p, 0xCD, bytes);
    return p;
  }
  void free_host(void* p) noexcept override { delete[] static_cast<char*>(p); }
  void copy_to_host(void* host, const void* device, size_t bytes, CudaStream stream) override {
    copy(host, device, bytes, stream);
  }
  void copy_to_device(void* device, const void* host, size_t bytes, CudaStream stream) override {
    copy(device, host, bytes, stream);
  }
  void synchronize(CudaStream stream) override {
    for (auto& [s, queue] : queues_)
      if (!stream || s == stream)
        while (!queue.empty()) {
          queue.front()();
          queue.pop_front();
        }
  }

 private:
  void copy(void* dst, const void* src, size_t bytes, CudaStream stream) {
    ++counts.copies;
    counts.copy_streams.insert(stream);
    enqueue(stream, [=] { std::memcpy(dst, src, bytes); });
  }
  std::map<CudaStream, std::deque<std::function<void()>>> queues_;
};

CudaStream fake_stream(uintptr_t id) {
  return reinterpret_cast<CudaStream>(id);
}

// The staged communicator over world() and a FakeDevice (returned through `device`).
std::unique_ptr<Comm> staged(FakeDevice** device) {
  auto fake = std::make_unique<FakeDevice>();
  *device = fake.get();
  return make_staged_comm(world(), std::move(fake));
}

TEST(StagedComm, CollectivesMoveTheRightNumbersInStreamOrder) {
  FakeDevice* dev = nullptr;
  auto c = staged(&dev);
  EXPECT_EQ(c->backend(), "mpi-staged");
  EXPECT_EQ(c->buffers(), Device::cuda);
  EXPECT_EQ(c->rank(), world().rank());
  EXPECT_EQ(c->world(), world().world());
  const CudaStream stream = fake_stream(0x10);
  c->set_stream(stream);
  const int r = c->rank(), n = c->world(), rsum = n * (n - 1) / 2;
  // Every input is written by a "kernel" queued on the stream: only a collective ordered after it
  // sees the values.
  auto written = [&](auto& buf, auto value_of) {
    dev->enqueue(stream, [&buf, value_of] {
      for (size_t i = 0; i < buf.size(); ++i) buf[i] = value_of(i);
    });
  };
  std::vector<float> f(7);
  std::vector<double> d(7);
  std::vector<int64_t> k(7);
  written(f, [r](size_t i) { return float(r + int(i)); });
  written(d, [r](size_t i) { return 0.5 * r + double(i); });
  written(k, [r](size_t) { return int64_t(r) << 33; });
  c->all_reduce_sum(f.data(), 7, DType::f32);
  c->all_reduce_sum(d.data(), 7, DType::f64);
  c->all_reduce_sum(k.data(), 7, DType::i64);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(f[size_t(i)], float(rsum + n * i));
    EXPECT_EQ(d[size_t(i)], 0.5 * rsum + n * i);
    EXPECT_EQ(k[size_t(i)], int64_t(rsum) << 33);
  }
  const int64_t count = 5;
  std::vector<float> send(size_t(count * n)), recv(size_t(count), -1.0f);
  written(send, [r, count](size_t i) { return float(100 * int(i / count) + r + int(i % count)); });
  c->reduce_scatter_sum(send.data(), recv.data(), count, DType::f32);
  for (int64_t j = 0; j < count; ++j) EXPECT_EQ(recv[size_t(j)], float(n * (100 * r + j) + rsum));
  std::vector<float> mine(3), all(size_t(3 * n), -1.0f);
  written(mine, [r](size_t) { return float(r); });
  c->all_gather(mine.data(), all.data(), 3, DType::f32);
  for (int q = 0; q < n; ++q)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(all[size_t(q * 3 + j)], float(q));
  std::vector<double> b(4);
  written(b, [r](size_t) { return double(r); });
  c->broadcast(b.data(), 4, DType::f64, n - 1);
  for (double x : b) EXPECT_EQ(x, double(n - 1));
  c->barrier();
  EXPECT_EQ(dev->counts.copy_streams, std::set<CudaStream>{stream});  // all on the caller's stream
}

TEST(StagedComm, WithoutAStreamItWaitsForTheWholeDevice) {
  FakeDevice* dev = nullptr;
  auto c = staged(&dev);
  // A kernel on some other stream writes the buffer; no stream is set, so the collective must wait
  // for every stream before it reads.
  std::vector<float> x(3, 0.0f);
  const int r = c->rank(), n = c->world();
  dev->enqueue(fake_stream(0x20), [&] { std::fill(x.begin(), x.end(), float(r + 1)); });
  c->all_reduce_sum(x.data(), 3, DType::f32);
  for (float v : x) EXPECT_EQ(v, float(n * (n + 1) / 2));
  EXPECT_EQ(dev->counts.copy_streams, std::set<CudaStream>{nullptr});
  // And set_stream(nullptr) goes back to this after a stream was set.
  c->set_stream(fake_stream(0x30));
  c->set_stream(nullptr);
  dev->enqueue(fake_stream(0x20), [&] { std::fill(x.begin(), x.end(), 1.0f); });
  c->all_reduce_sum(x.data(), 3, DType::f32);
  for (float v : x) EXPECT_EQ(v, float(n));
  EXPECT_EQ(dev->counts.copy_streams, std::set<CudaStream>{nullptr});
}

TEST(StagedComm, OneHostBufferSizedByTheLargestCollective) {
  FakeDevice* dev = nullptr;
  auto c = staged(&dev);
  c->set_stream(fake_stream(0x10));
  const int n = c->world();
  const int64_t count = 64;  // a rank block, as the CUDA optimizer's
  std::vector<float> blocks(size_t(count * n), 1.0f), own(static_cast<size_t>(count));
  // An optimizer step's collectives, several steps: reduce-scatter (input n blocks, output one)
  // is the largest, so the buffer is (n + 1) blocks, allocated once.
  for (int step = 0; step < 3; ++step) {
    c->reduce_scatter_sum(blocks.data(), own.data(), count, DType::f32);
    c->all_reduce_sum(blocks.data(), count * n, DType::f32);
    c->all_gather(own.data(), blocks.data(), count, DType::f32);
  }
  EXPECT_EQ(dev->counts.allocations, 1);
  EXPECT_EQ(dev->counts.allocated_bytes, size_t(count * (n + 1)) * sizeof(float));
  EXPECT_EQ(dev->counts.copies, 3 * 3 * 2);  // two per collective
  // A larger collective grows it once; smaller ones after it reuse it.
  std::vector<double> big(size_t(count * (n + 2)), 1.0);
  c->all_reduce_sum(big.data(), int64_t(big.size()), DType::f64);
  c->all_reduce_sum(big.data(), int64_t(big.size()), DType::f64);
  c->reduce_scatter_sum(blocks.data(), own.data(), count, DType::f32);
  EXPECT_EQ(dev->counts.allocations, 2);
  EXPECT_EQ(dev->counts.allocated_bytes, big.size() * sizeof(double));
}

TEST(StagedComm, HostValuesGoStraightToMpi) {
  FakeDevice* dev = nullptr;
  auto c = staged(&dev);
  const int r = c->rank(), n = c->world();
  EXPECT_EQ(c->sum(double(r)), double(n * (n - 1) / 2));
  EXPECT_TRUE(c->any(r == 0));
  const auto strings = c->all_gather_strings(std::string(size_t(r), 'x'));
  ASSERT_EQ(int(strings.size()), n);
  for (int q = 0; q < n; ++q) EXPECT_EQ(strings[size_t(q)], std::string(size_t(q), 'x'));
  std::vector<int32_t> mine(5, r), all(size_t(5 * n));
  c->host_all_gather(mine.data(), all.data(), int64_t(mine.size() * sizeof(int32_t)));
  for (int q = 0; q < n; ++q) EXPECT_EQ(all[size_t(5 * q + 4)], q);
  EXPECT_EQ(dev->counts.copies, 0);
  EXPECT_EQ(dev->counts.allocations, 0);
  EXPECT_GT(c->collective_seconds(), 0.0);
}

// Parameters of several shapes (so Muon matrices spread over the ranks), random gradients that
// differ by rank, and the mean of every rank's gradients for the one-process reference.
struct Toy : testing::ToyParams {
  Toy()
      : ToyParams({{"embed.weight", {24, 8}},
                   {"blocks.0.attn.wq", {8, 8}},
                   {"blocks.0.attn.wk", {8, 8}},
                   {"blocks.0.attn.wv", {8, 8}},
                   {"blocks.0.attn.wo", {8, 8}},
                   {"blocks.0.mlp.w1", {12, 8}},
                   {"blocks.0.mlp.w2", {8, 12}},
                   {"blocks.0.attn_norm.weight", {8}},
                   {"blocks.1.attn.wq", {8, 8}},
                   {"blocks.1.mlp.w1", {12, 8}},
                   {"head.weight", {24, 8}}},
                  11) {}
  // Rank `rank`'s gradient at `step`, or (rank = −1) the mean over `world` ranks.
  void fill_grads(int step, int rank, int world) {
    for (size_t i = 0; i < grads.size(); ++i) {
      std::fill(grads[i].begin(), grads[i].end(), 0.0f);
      for (int q = 0; q < world; ++q) {
        if (rank >= 0 && q != rank) continue;
        Rng rng(uint64_t(1000 * step + 10 * q + i + 1));
        for (float& g : grads[i]) g += float(0.01 * rng.normal());
      }
      if (rank < 0)
        for (float& g : grads[i]) g /= float(world);
    }
  }
};

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1e-30;
  for (size_t j = 0; j < a.size(); ++j)
    diff = std::max(diff, double(std::abs(a[j] - b[j]))),
    scale = std::max(scale, double(std::abs(b[j])));
  return diff / scale;
}

class DistributedOptimizer : public ::testing::TestWithParam<const char*> {};

TEST_P(DistributedOptimizer, MatchesOneProcessOnTheAveragedGradients) {
  Comm& c = world();
  OptimConfig cfg;
  cfg.routing = GetParam();
  Toy dist, ref;
  const auto routes = resolve_routing(dist.specs, cfg, "t", nullptr);
  auto opt = Optimizer::create(routes, dist.slots(), cfg, &c);
  auto opt_ref = Optimizer::create(routes, ref.slots(), cfg);
  const std::vector<int> owner = muon_owner_ranks(routes, c.world());
  int64_t muon = 0, mine = 0;
  for (int o : owner) muon += o >= 0, mine += o == c.rank();

  for (int t = 0; t < 4; ++t) {
    dist.fill_grads(t, c.rank(), c.world());
    ref.fill_grads(t, -1, c.world());
    const bool everywhere = t % 2 == 1;
    const double norm = opt->reduce_gradients(everywhere);
    const double norm_ref = opt_ref->reduce_gradients(false);
    EXPECT_NEAR(norm, norm_ref, 1e-6 * norm_ref) << "step " << t;
    if (everywhere)  // every rank holds every averaged gradient
      for (size_t i = 0; i < dist.grads.size(); ++i)
        EXPECT_LT(max_rel_diff(dist.grads[i], ref.grads[i]), 1e-6) << dist.specs[i].name;
    opt->step(t, 1.0);
    opt_ref->step(t, 1.0);
    // Each Muon matrix is dualized by exactly one rank: its owner.
    EXPECT_EQ(opt->dualize_calls(), mine);
    EXPECT_EQ(c.sum(double(opt->dualize_calls())), double(muon));
    for (size_t i = 0; i < dist.values.size(); ++i)
      EXPECT_LT(max_rel_diff(dist.values[i], ref.values[i]), 1e-5)
          << dist.specs[i].name << " step " << t;
  }

  // The gathered state is the one-process state, and a one-process checkpoint resumes here.
  const auto state = opt->state_tensors(), state_ref = opt_ref->state_tensors();
  ASSERT_EQ(state.size(), state_ref.size());
  for (size_t k = 0; k < state.size(); ++k) {
    EXPECT_EQ(state[k].name, state_ref[k].name);
    EXPECT_EQ(state[k].shape, state_ref[k].shape);
    int64_t n = 1;
    for (int64_t s : state[k].shape) n *= s;
    const float* a = static_cast<const float*>(state[k].data);
    const float* b = static_cast<const float*>(state_ref[k].data);
    EXPECT_LT(max_rel_diff({a, a + n}, {b, b + n}), 1e-5) << state[k].name;
  }
  const auto path = std::filesystem::temp_directory_path() /
                    ("muongpt_mpi_state_" + std::to_string(c.rank()) + ".safetensors");
  write_safetensors(path.string(), state_ref);
  Toy resumed;
  resumed.values = ref.values;
  auto opt2 = Optimizer::create(routes, resumed.slots(), cfg, &c);
  opt2->load_state(SafetensorsFile(path.string()), opt_ref->state_json(), path.string());
  for (int t = 4; t < 6; ++t) {
    resumed.fill_grads(t, c.rank(), c.world());
    ref.fill_grads(t, -1, c.world());
    opt2->reduce_gradients(false);
    opt_ref->reduce_gradients(false);
    opt2->step(t, 0.5);
    opt_ref->step(t, 0.5);
  }
  for (size_t i = 0; i < ref.values.size(); ++i)
    EXPECT_LT(max_rel_diff(resumed.values[i], ref.values[i]), 1e-5) << ref.specs[i].name;
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(Presets, DistributedOptimizer,
                         ::testing::Values("speedrun", "adamw", "specgd"));

TEST(ShardPlan, SegmentsCoverEveryElementOnce) {
  OptimConfig cfg;
  Toy toy;
  const auto routes = resolve_routing(toy.specs, cfg, "t", nullptr);
  const int n = world().world();
  const ShardPlan plan = make_shard_plan(routes, n);
  for (size_t i = 0; i < routes.size(); ++i) {
    std::vector<int> hits(size_t(toy.specs[i].numel()), 0);
    for (int r = 0; r < n; ++r) {
      const ShardSegment s = plan.segment(i, r);
      for (int64_t j = s.begin; j < s.end; ++j) ++hits[size_t(j)];
      EXPECT_LE(s.offset + s.size(), plan.count);
    }
    for (int h : hits) EXPECT_EQ(h, 1) << toy.specs[i].name;
  }
}

}  // namespace
}  // namespace muongpt
