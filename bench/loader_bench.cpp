// Loader throughput: tokens per second that DataLoader::next() and ValLoader::batch() deliver
// from shards in the page cache (the files are read once before timing). Not part of the test
// suite; build and run it with `bash bench/loader.sh`.
//
//   loader_bench DIR [MODE...]   writes DIR/bench_train_00000{1..4}.bin (25M tokens each) and
//                                DIR/bench_val_000000.bin once, then times each MODE
//                                (default: contiguous bos-aligned random)
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "data/loader.h"
#include "data/shard.h"

namespace {

using namespace muongpt;
using Clock = std::chrono::steady_clock;

constexpr int64_t kShardTokens = 25'000'000;
constexpr int kShards = 4;

// Documents of 1 to 2000 tokens (FineWeb's mean is about 1000), each starting with EOT.
void write_shards(const std::string& dir) {
  Rng rng(7);
  std::vector<uint16_t> t(kShardTokens);
  int64_t left = 0;
  for (int s = 0; s <= kShards; ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), s == 0 ? "bench_val_%06d.bin" : "bench_train_%06d.bin", s);
    const std::string path = dir + "/" + name;
    if (std::filesystem::exists(path)) continue;
    for (auto& x : t) {
      if (left == 0) {
        left = 1 + static_cast<int64_t>(rng.below(2000));
        x = kEot;
      } else {
        x = static_cast<uint16_t>(rng.below(50000));
      }
      --left;
    }
    write_shard(path, t.data(), kShardTokens);
  }
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best of 3 runs of `calls` next() calls, in tokens (B·T per call) per second.
void time_train(const std::string& dir, SampleMode mode, int64_t B, int64_t T, int world,
                bool prefetch, int calls) {
  LoaderOptions o;
  o.pattern = dir + "/bench_train_*.bin";
  o.batch = B;
  o.seq = T;
  o.rank = 0;
  o.world = world;
  o.mode = mode;
  o.seed = 1;
  o.prefetch = prefetch;
  std::vector<int32_t> buf(static_cast<size_t>(B * (T + 1)));
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    DataLoader dl(o);
    dl.next(buf.data());  // warm up: the first batch, the thread start
    const auto t0 = Clock::now();
    for (int c = 0; c < calls; ++c) dl.next(buf.data());
    best = std::min(best, seconds_since(t0));
  }
  std::printf(
      "train %-11s B %3lld T %4lld world %d prefetch %d: %8.1f M tokens/s  (%.3f ms/call)\n",
      sample_mode_name(mode), (long long)B, (long long)T, world, prefetch ? 1 : 0,
      double(calls) * B * T / best / 1e6, 1e3 * best / calls);
}

void time_val(const std::string& dir, int64_t B, int64_t T) {
  ValLoader v(dir + "/bench_val_*.bin", 10'485'760, B, T, 0, 1);
  std::vector<int32_t> buf(static_cast<size_t>(B * (T + 1)));
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < v.num_batches(); ++i) v.batch(i, buf.data());
    best = std::min(best, seconds_since(t0));
  }
  std::printf(
      "val                B %3lld T %4lld                   : %8.1f M tokens/s  (%.3f ms/batch)\n",
      (long long)B, (long long)T, double(v.num_batches()) * B * T / best / 1e6,
      1e3 * best / double(v.num_batches()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: loader_bench DIR [MODE...]\n");
    return 2;
  }
  try {
    const std::string dir = argv[1];
    std::filesystem::create_directories(dir);
    write_shards(dir);
    std::vector<SampleMode> modes;
    for (int i = 2; i < argc; ++i) modes.push_back(parse_sample_mode(argv[i], "loader_bench"));
    if (modes.empty())
      modes = {SampleMode::contiguous, SampleMode::bos_aligned, SampleMode::random};
    for (SampleMode m : modes) {
      time_train(dir, m, 64, 1024, 1, false, 1000);
      time_train(dir, m, 64, 1024, 1, true, 1000);
      time_train(dir, m, 8, 1024, 8, false, 1000);
    }
    time_val(dir, 64, 1024);
  } catch (const Error& e) {
    std::fprintf(stderr, "loader_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
