// The distributed loader: the global stream, rank slicing (disjoint, and concatenating to the
// single-process batch), the three sampling modes, epochs, exact resume, and the validation
// loader.
#include <array>
#include <chrono>
#include <set>
#include <thread>

#include "core/rng.h"
#include "data/loader.h"
#include "data_testing.h"

namespace muongpt {
namespace {

using testing::error_of;
namespace fs = std::filesystem;
using Window = std::vector<int32_t>;

// Synthetic shards of documents: each document starts with EOT, every other token is
// 1 + (its position in the concatenation mod 50000), so a window's tokens say where it came from.
class LoaderTest : public testing::TempDirTest {
 protected:
  // Writes shards of the given sizes; document lengths are drawn from [1, max_doc].
  std::string make(const std::vector<int64_t>& sizes, int64_t max_doc = 40, uint64_t seed = 1) {
    Rng rng(seed);
    int64_t left_in_doc = 0;
    int64_t pos = static_cast<int64_t>(all_.size());
    for (size_t i = 0; i < sizes.size(); ++i) {
      std::vector<uint16_t> t;
      for (int64_t k = 0; k < sizes[i]; ++k, ++pos) {
        if (left_in_doc == 0) {
          left_in_doc = 1 + static_cast<int64_t>(rng.below(static_cast<uint64_t>(max_doc)));
          t.push_back(kEot);
        } else {
          t.push_back(static_cast<uint16_t>(1 + pos % 50000));
        }
        --left_in_doc;
      }
      all_.insert(all_.end(), t.begin(), t.end());
      char name[64];
      std::snprintf(name, sizeof(name), "d_train_%06zu.bin", i + 1);
      write_tokens(name, t);
    }
    return path("d_train_*.bin");
  }

  // Epoch 0 of the stream as docs/data.md defines it, computed independently of the loader.
  std::vector<Window> reference_windows(int64_t T, SampleMode mode) const {
    std::vector<Window> out;
    const int64_t n = static_cast<int64_t>(all_.size());
    int64_t p = 0;
    for (;;) {
      int64_t s = p;
      if (mode == SampleMode::bos_aligned)
        while (s < n && all_[s] != kEot) ++s;
      if (s + T + 1 > n) break;
      out.emplace_back(all_.begin() + s, all_.begin() + s + T + 1);
      p = s + T;
    }
    return out;
  }

  static LoaderOptions options(const std::string& pattern, int64_t B, int64_t T, int rank = 0,
                               int world = 1, SampleMode mode = SampleMode::contiguous) {
    LoaderOptions o;
    o.pattern = pattern;
    o.batch = B;
    o.seq = T;
    o.rank = rank;
    o.world = world;
    o.mode = mode;
    o.seed = 1234;
    return o;
  }

  // The B windows of one next() call.
  static std::vector<Window> call(DataLoader& dl) {
    const LoaderOptions& o = dl.options();
    std::vector<int32_t> buf(static_cast<size_t>(o.batch * (o.seq + 1)), -1);
    dl.next(buf.data());
    std::vector<Window> out;
    for (int64_t b = 0; b < o.batch; ++b)
      out.emplace_back(buf.begin() + b * (o.seq + 1), buf.begin() + (b + 1) * (o.seq + 1));
    return out;
  }

  std::vector<uint16_t> all_;
};

TEST_F(LoaderTest, ContiguousWindowsFollowTheStreamAcrossShards) {
  // Shard sizes that put window boundaries inside, at the edge of, and across shards (an empty
  // shard and a one-token shard included).
  const std::string pattern = make({37, 0, 1, 100, 16, 50});
  const int64_t T = 16, B = 3;
  const auto ref = reference_windows(T, SampleMode::contiguous);
  ASSERT_EQ(ref.size(), (204u - 1) / 16);  // 12 windows in epoch 0
  for (bool prefetch : {false, true}) {
    LoaderOptions o = options(pattern, B, T);
    o.prefetch = prefetch;
    DataLoader dl(o);
    EXPECT_EQ(dl.total_tokens(), 204);
    EXPECT_EQ(dl.files().size(), 6u);
    for (size_t c = 0; c < ref.size() / B; ++c) {
      EXPECT_EQ(dl.epoch(), 0);
      const auto got = call(dl);
      for (int64_t b = 0; b < B; ++b)
        EXPECT_EQ(got[b], ref[c * B + b]) << "call " << c << " row " << b;
    }
    // The 12 windows of epoch 0 are used up: the next batch starts epoch 1.
    EXPECT_EQ(dl.epoch(), 1);
  }
}

TEST_F(LoaderTest, BosAlignedWindowsStartAtEotAndFollowTheGreedyRule) {
  const std::string pattern = make({300, 7, 250, 400}, 30);
  const int64_t T = 24, B = 2;
  const auto ref = reference_windows(T, SampleMode::bos_aligned);
  ASSERT_GE(ref.size(), 20u);
  DataLoader dl(options(pattern, B, T, 0, 1, SampleMode::bos_aligned));
  for (size_t c = 0; c < ref.size() / B; ++c) {
    const auto got = call(dl);
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_EQ(got[b][0], kEot) << "call " << c << " row " << b;
      EXPECT_EQ(got[b], ref[c * B + b]) << "call " << c << " row " << b;
    }
  }
}

// For N ranks with batch B, call c of rank r returns global windows [(cN + r)B, (cN + r + 1)B):
// the ranks' batches concatenated equal the batch of one rank with batch N·B (in the random mode
// too: the ranks draw disjoint window indices of one seeded stream).
TEST_F(LoaderTest, RanksConcatenateToTheSingleProcessBatch) {
  const std::string pattern = make({500, 333, 1, 420}, 50);
  const int64_t T = 16, B = 2;
  for (SampleMode mode : {SampleMode::contiguous, SampleMode::bos_aligned, SampleMode::random}) {
    for (int N : {1, 2, 4}) {
      DataLoader single(options(pattern, N * B, T, 0, 1, mode));
      std::vector<std::unique_ptr<DataLoader>> ranks;
      for (int r = 0; r < N; ++r)
        ranks.push_back(std::make_unique<DataLoader>(options(pattern, B, T, r, N, mode)));
      ::testing::internal::CaptureStderr();  // epoch notes
      for (int c = 0; c < 100; ++c) {        // several epochs
        const auto want = call(single);
        std::vector<Window> got;
        for (int r = 0; r < N; ++r)
          for (auto& w : call(*ranks[r])) got.push_back(std::move(w));
        ASSERT_EQ(got, want) << sample_mode_name(mode) << " N " << N << " call " << c;
      }
      ::testing::internal::GetCapturedStderr();
      EXPECT_GE(single.epoch(), 2) << "the test should cross epochs";
      for (int r = 0; r < N; ++r) EXPECT_EQ(ranks[r]->position(), single.position());
    }
  }
}

// Within an epoch no two windows (over all ranks and calls) are the same, and N ranks × k calls
// cover exactly the windows of 1 rank × N·k calls.
TEST_F(LoaderTest, RanksAreDisjointAndCoverTheSingleProcessWindows) {
  const std::string pattern = make({1000, 999, 1003}, 60);
  const int64_t T = 32, B = 3;
  for (SampleMode mode : {SampleMode::contiguous, SampleMode::bos_aligned}) {
    const size_t epoch_windows = reference_windows(T, mode).size();
    for (int N : {1, 2, 4}) {
      const int k = static_cast<int>(epoch_windows / (N * B));
      ASSERT_GE(k, 3);
      std::multiset<Window> seen;
      for (int r = 0; r < N; ++r) {
        DataLoader dl(options(pattern, B, T, r, N, mode));
        for (int c = 0; c < k; ++c)
          for (auto& w : call(dl)) seen.insert(std::move(w));
      }
      std::multiset<Window> single;
      DataLoader one(options(pattern, B, T, 0, 1, mode));
      for (int c = 0; c < N * k; ++c)
        for (auto& w : call(one)) single.insert(std::move(w));
      EXPECT_EQ(seen, single) << sample_mode_name(mode) << " N " << N;
      const std::set<Window> distinct(seen.begin(), seen.end());
      EXPECT_EQ(distinct.size(), seen.size()) << sample_mode_name(mode) << " N " << N;
      EXPECT_EQ(seen.size(), static_cast<size_t>(N * k * B));
    }
  }
}

TEST_F(LoaderTest, ResumeFromASavedPositionIsExact) {
  const std::string pattern = make({700, 300, 450}, 45);
  const int64_t T = 20, B = 4;
  for (SampleMode mode : {SampleMode::contiguous, SampleMode::bos_aligned, SampleMode::random}) {
    for (bool prefetch : {false, true}) {
      LoaderOptions o = options(pattern, B, T, 1, 2, mode);
      o.prefetch = prefetch;
      DataLoader a(o);
      ::testing::internal::CaptureStderr();
      for (int c = 0; c < 9; ++c) call(a);
      // Through JSON text, as a checkpoint stores it.
      const std::string saved = a.position().to_json().dump();
      std::vector<std::vector<Window>> rest;
      for (int c = 0; c < 25; ++c) rest.push_back(call(a));  // crosses into later epochs

      const LoaderPosition pos = LoaderPosition::from_json(nlohmann::json::parse(saved), "ckpt");
      DataLoader b(o);
      b.restore(pos);
      EXPECT_EQ(b.position(), pos);
      for (int c = 0; c < 25; ++c) ASSERT_EQ(call(b), rest[c]) << "call " << c;
      // Rewinding the same loader (its prefetched batch is discarded) works too.
      a.restore(pos);
      for (int c = 0; c < 25; ++c) ASSERT_EQ(call(a), rest[c]) << "rewound call " << c;
      ::testing::internal::GetCapturedStderr();
      EXPECT_EQ(a.position(), b.position());
    }
  }
}

TEST_F(LoaderTest, APositionResumesUnderAnotherWorldSize) {
  const std::string pattern = make({900, 650}, 40);
  const int64_t T = 16;
  for (SampleMode mode : {SampleMode::contiguous, SampleMode::random}) {
    // Two ranks with B = 3 for 5 calls, then one rank with B = 6 from the saved position.
    DataLoader r0(options(pattern, 3, T, 0, 2, mode)), r1(options(pattern, 3, T, 1, 2, mode));
    for (int c = 0; c < 5; ++c) {
      call(r0);
      call(r1);
    }
    DataLoader reference(options(pattern, 6, T, 0, 1, mode));
    for (int c = 0; c < 5; ++c) call(reference);
    DataLoader resumed(options(pattern, 6, T, 0, 1, mode));
    resumed.restore(r0.position());
    EXPECT_EQ(call(resumed), call(reference)) << sample_mode_name(mode);
  }
}

TEST_F(LoaderTest, PositionIsOfTheNextBatchEvenWithPrefetch) {
  const std::string pattern = make({800}, 30);
  LoaderOptions o = options(pattern, 2, 16);
  o.prefetch = false;
  DataLoader sync(o);
  o.prefetch = true;
  DataLoader async(o);
  EXPECT_EQ(async.position(), sync.position());
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(call(async), call(sync));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let the prefetch run ahead
    EXPECT_EQ(async.position(), sync.position()) << "after call " << c;
  }
  EXPECT_EQ(sync.position().offset, 4 * 2 * 16);
}

// --- the random mode --------------------------------------------------------------------------

// Where a window of the synthetic stream starts: its first non-EOT token is 1 + its position.
int64_t start_of(const Window& w) {
  for (size_t k = 0; k < w.size(); ++k)
    if (w[k] != kEot) return w[k] - 1 - static_cast<int64_t>(k);
  return -1;
}

TEST_F(LoaderTest, RandomDrawsAreSplitMix64ByWindowIndex) {
  // SplitMix64's published first outputs for seed 0: the counter-based draw the mode rests on.
  EXPECT_EQ(splitmix64_at(0, 0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64_at(0, 1), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(splitmix64_at(0, 2), 0x06C45D188009454Full);
  EXPECT_EQ(Rng(5).state(), (std::array<uint64_t, 4>{splitmix64_at(5, 0), splitmix64_at(5, 1),
                                                     splitmix64_at(5, 2), splitmix64_at(5, 3)}));
}

// Every window is T+1 consecutive tokens of the sorted shards' concatenation, crossing shard
// boundaries (an empty and a one-token shard included), and every start that leaves room for
// T+1 tokens is drawn; the same seed gives the same windows, another seed others.
TEST_F(LoaderTest, RandomWindowsAreSeededSlicesOfTheStream) {
  const std::vector<int64_t> sizes = {37, 0, 1, 100, 16, 50};
  const std::string pattern = make(sizes, 1000);  // long documents: few EOTs
  const int64_t T = 16, B = 4, total = 204, starts = total - T;
  std::set<int64_t> boundaries;
  for (int64_t acc = 0; int64_t s : sizes) boundaries.insert(acc += s);
  auto draw = [&](uint64_t seed, int calls, bool prefetch) {
    LoaderOptions o = options(pattern, B, T, 0, 1, SampleMode::random);
    o.seed = seed;
    o.prefetch = prefetch;
    DataLoader dl(o);
    std::vector<Window> out;
    ::testing::internal::CaptureStderr();  // epoch notes
    for (int c = 0; c < calls; ++c)
      for (auto& w : call(dl)) out.push_back(std::move(w));
    ::testing::internal::GetCapturedStderr();
    return out;
  };
  const auto a = draw(7, 1250, true);  // 5000 windows over 188 starts
  std::vector<int> seen(static_cast<size_t>(starts), 0);
  int crossing = 0;
  for (const Window& w : a) {
    const int64_t s = start_of(w);
    ASSERT_GE(s, 0);
    ASSERT_LT(s, starts) << "a window must fit: start + T + 1 <= " << total;
    ASSERT_EQ(w, Window(all_.begin() + s, all_.begin() + s + T + 1)) << "start " << s;
    ++seen[s];
    crossing += boundaries.lower_bound(s + 1) != boundaries.end() &&
                *boundaries.lower_bound(s + 1) < s + T + 1;
  }
  for (int64_t s = 0; s < starts; ++s) EXPECT_GT(seen[s], 0) << "start " << s << " never drawn";
  EXPECT_GT(crossing, 0);
  EXPECT_EQ(draw(7, 1250, false), a);  // the same with or without the prefetch thread
  const auto b = draw(8, 1250, true);
  EXPECT_NE(b, a);
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, a.size() / 10) << "another seed draws other windows, not a shifted stream";
}

// Starts are uniform over the stream: 20,000 draws in 10 bins of ~1000 starts each, every bin
// within 15% of its expected 2,000 (7 standard deviations), and the epoch counts tokens drawn.
TEST_F(LoaderTest, RandomPositionsCoverTheStreamUniformly) {
  const std::string pattern = make({3000, 2500, 4500}, 200);
  const int64_t T = 32, B = 8, total = 10000, starts = total - T;
  DataLoader dl(options(pattern, B, T, 0, 1, SampleMode::random));
  std::vector<int64_t> bins(10, 0);
  ::testing::internal::CaptureStderr();
  const int calls = 2500;
  for (int c = 0; c < calls; ++c)
    for (const Window& w : call(dl)) ++bins[static_cast<size_t>(start_of(w) * 10 / starts)];
  const std::string notes = ::testing::internal::GetCapturedStderr();
  const double expected = double(calls * B) / 10;
  for (size_t i = 0; i < bins.size(); ++i)
    EXPECT_NEAR(double(bins[i]), expected, 0.15 * expected) << "bin " << i;
  // epoch = floor(windows drawn · T / total): the next window, 20,000, is in epoch 64; epochs 1
  // to 63 began with windows already drawn, one note each.
  EXPECT_EQ(dl.epoch(), 64);
  EXPECT_EQ(dl.position().window, calls * B);
  EXPECT_EQ(testing::count_lines(notes), 63);
  EXPECT_NE(notes.find(pattern + ": epoch 1 begins\n"), std::string::npos);
}

TEST_F(LoaderTest, EpochsWrapWithANoteAndDependOnlyOnTheSeed) {
  const std::string pattern = make({60, 45, 70, 33, 52}, 20);
  const int64_t T = 16, B = 2;
  const size_t per_epoch = reference_windows(T, SampleMode::contiguous).size();  // 16
  auto stream = [&](uint64_t seed, int calls, std::string* notes = nullptr) {
    LoaderOptions o = options(pattern, B, T);
    o.seed = seed;
    DataLoader dl(o);
    ::testing::internal::CaptureStderr();
    std::vector<Window> out;
    for (int c = 0; c < calls; ++c)
      for (auto& w : call(dl)) out.push_back(std::move(w));
    const std::string err = ::testing::internal::GetCapturedStderr();
    if (notes) *notes = err;
    return out;
  };
  std::string notes;
  // 60 windows: epoch 0 has 16, later ones 15 or 16 (their offset is in [0, T)), so epochs
  // 1, 2 and 3 begin and epoch 4 does not.
  const auto a = stream(5, 30, &notes);
  EXPECT_EQ(notes, "muongpt: note: " + pattern + ": epoch 1 begins\nmuongpt: note: " + pattern +
                       ": epoch 2 begins\nmuongpt: note: " + pattern + ": epoch 3 begins\n");
  EXPECT_EQ(stream(5, 30), a);  // deterministic
  const auto b = stream(6, 30);
  // Epoch 0 is the same for every seed (sorted shards, offset 0); later epochs differ.
  const auto ref = reference_windows(T, SampleMode::contiguous);
  for (size_t i = 0; i < per_epoch; ++i) {
    EXPECT_EQ(a[i], ref[i]);
    EXPECT_EQ(b[i], ref[i]);
  }
  EXPECT_NE(std::vector<Window>(a.begin() + per_epoch, a.end()),
            std::vector<Window>(b.begin() + per_epoch, b.end()));
  // Every window of every epoch is a run of T+1 consecutive stream tokens of some shard order:
  // each non-EOT token is 1 + its position, so consecutive non-EOT tokens inside one shard
  // increase by one. Check that each window is made of whole-shard pieces in that sense.
  std::set<int64_t> boundaries = {0};
  {
    int64_t acc = 0;
    for (int64_t s : {60, 45, 70, 33, 52}) boundaries.insert(acc += s);
  }
  for (const Window& w : a)
    for (size_t k = 1; k < w.size(); ++k)
      if (w[k] != kEot && w[k - 1] != kEot && w[k] != w[k - 1] + 1)
        EXPECT_TRUE(boundaries.count(w[k] - 1)) << "a jump that is not a shard boundary";
}

TEST_F(LoaderTest, BadInputGivesClearErrors) {
  const std::string pattern = make({100}, 10);
  EXPECT_EQ(error_of([&] { DataLoader dl(options(path("none_*.bin"), 1, 8)); }),
            path("none_*.bin") + ": matches no files");
  EXPECT_EQ(error_of([&] { DataLoader dl(options(pattern, 1, 100)); }),
            pattern + ": the shards hold 100 tokens in all, fewer than one window of T+1 = 101");
  EXPECT_EQ(error_of([&] { DataLoader dl(options(pattern, 0, 8)); }),
            pattern + ": loader batch must be at least 1 (got 0)");
  EXPECT_EQ(error_of([&] { DataLoader dl(options(pattern, 1, 8, 2, 2)); }),
            pattern + ": loader rank 2 is not in [0, world size 2)");
  // A corrupt shard among good ones is named.
  const std::string bad = write_bytes("d_train_000009.bin", "not a shard");
  EXPECT_EQ(error_of([&] { DataLoader dl(options(pattern, 1, 8)); }),
            bad + ": short header: the file has 11 bytes, a shard header needs 1024");
  fs::remove(bad);
  // bos-aligned sampling needs EOTs.
  write_tokens("noeot_000001.bin", std::vector<uint16_t>(200, 5));
  EXPECT_NE(error_of([&] {
              DataLoader dl(options(path("noeot_*.bin"), 1, 8, 0, 1, SampleMode::bos_aligned));
            }).find("no window of 9 tokens starting at an EOT"),
            std::string::npos);
  // Token ids are checked when asked.
  write_tokens("oov_000001.bin", {kEot, 1, 2, 60000, 3, 4, 5, 6, 7, 8, 9});
  LoaderOptions o = options(path("oov_*.bin"), 1, 4);
  o.check_tokens = true;
  EXPECT_EQ(error_of([&] { DataLoader dl(o); }),
            path("oov_000001.bin") +
                ": token id 60000 at position 3 is outside the vocabulary (ids < 50257)");
}

TEST_F(LoaderTest, RestoreChecksTheFingerprint) {
  const std::string pattern = make({300}, 20);
  DataLoader dl(options(pattern, 2, 16));
  LoaderPosition p = dl.position();
  p.source = "ckpt/loader.json";
  LoaderPosition q = p;
  q.seq = 32;
  EXPECT_EQ(error_of([&] { dl.restore(q); }),
            "ckpt/loader.json: loader position was saved with seq 32, this loader has 16");
  q = p;
  q.mode = SampleMode::bos_aligned;
  EXPECT_EQ(error_of([&] { dl.restore(q); }),
            "ckpt/loader.json: loader position was saved with mode bos-aligned, this loader has "
            "contiguous");
  q = p;
  q.total_tokens = 301;
  EXPECT_NE(error_of([&] { dl.restore(q); }).find("total_tokens 301"), std::string::npos);
  q = p;
  q.offset = 301;
  EXPECT_NE(error_of([&] { dl.restore(q); }).find("out of range"), std::string::npos);
  EXPECT_EQ(error_of([&] { dl.restore(p); }), "");
  // A position saved in the random mode is refused by a loader in another, and the other way.
  DataLoader rnd(options(pattern, 2, 16, 0, 1, SampleMode::random));
  LoaderPosition r = rnd.position();
  r.source = "ckpt/loader.json";
  EXPECT_EQ(error_of([&] { dl.restore(r); }),
            "ckpt/loader.json: loader position was saved with mode random, this loader has "
            "contiguous");
  EXPECT_EQ(error_of([&] { rnd.restore(p); }),
            "ckpt/loader.json: loader position was saved with mode contiguous, this loader has "
            "random");
  // In the random mode the window index is the position; epoch and offset must agree with it.
  r.window = 40;  // 40 · 16 / 300: epoch 2
  EXPECT_NE(error_of([&] { rnd.restore(r); }).find("inconsistent"), std::string::npos);
  r.epoch = 2;
  EXPECT_EQ(error_of([&] { rnd.restore(r); }), "");
  EXPECT_EQ(rnd.position(), r);
  EXPECT_EQ(rnd.epoch(), 2);
  r.offset = 5;
  EXPECT_NE(error_of([&] { rnd.restore(r); }).find("inconsistent"), std::string::npos);
  // A random-mode position needs its window; positions saved before it existed have none.
  nlohmann::json jr = rnd.position().to_json();
  EXPECT_EQ(jr.at("mode"), "random");
  EXPECT_EQ(jr.at("window"), 40);
  jr.erase("window");
  EXPECT_EQ(error_of([&] { LoaderPosition::from_json(jr, "state.json"); }),
            "state.json: loader position has no 'window'");
  nlohmann::json old = p.to_json();
  old.erase("window");
  EXPECT_EQ(LoaderPosition::from_json(old, "state.json"), p);

  nlohmann::json j = p.to_json();
  EXPECT_EQ(j.at("mode"), "contiguous");
  j.erase("offset");
  EXPECT_EQ(error_of([&] { LoaderPosition::from_json(j, "state.json"); }),
            "state.json: loader position has no 'offset'");
  j = p.to_json();
  j["mode"] = "shuffled";
  EXPECT_EQ(error_of([&] { LoaderPosition::from_json(j, "state.json"); }),
            "state.json: unknown sample mode 'shuffled' (expected contiguous, bos-aligned or "
            "random)");
  EXPECT_EQ(error_of([&] { LoaderPosition::from_json(nlohmann::json::array(), "s.json"); }),
            "s.json: loader position is not a JSON object");
}

// --- validation loader ------------------------------------------------------------------------

class ValLoaderTest : public LoaderTest {};

TEST_F(ValLoaderTest, RanksTakeInterleavedWindowsOfTheFirstValTokens) {
  const std::string pattern = make({123, 77, 260}, 25);  // 460 tokens
  const int64_t T = 10, B = 2, val_tokens = 401;
  // Windows k = 0..39: inputs [10k, 10k + 10) lie in the first 401 tokens.
  std::vector<Window> windows;
  for (int64_t k = 0; k < 40; ++k)
    windows.emplace_back(all_.begin() + k * T, all_.begin() + k * T + T + 1);
  for (int N : {1, 2, 4}) {
    std::vector<ValLoader> ranks;
    for (int r = 0; r < N; ++r) ranks.emplace_back(pattern, val_tokens, B, T, r, N);
    const int64_t nb = 40 / (N * B);
    for (int r = 0; r < N; ++r) {
      EXPECT_EQ(ranks[r].windows(), 40);
      EXPECT_EQ(ranks[r].num_batches(), nb) << "rank " << r << " of " << N;
    }
    std::vector<int32_t> buf(B * (T + 1));
    std::set<int64_t> used;
    for (int r = 0; r < N; ++r)
      for (int64_t i = 0; i < nb; ++i) {
        ranks[r].batch(i, buf.data());
        for (int64_t j = 0; j < B; ++j) {
          const int64_t k = (i * B + j) * N + r;  // rank r takes windows r, r+N, ...
          EXPECT_EQ(Window(buf.begin() + j * (T + 1), buf.begin() + (j + 1) * (T + 1)), windows[k]);
          EXPECT_TRUE(used.insert(k).second);
        }
      }
    EXPECT_EQ(static_cast<int64_t>(used.size()), nb * N * B);
    EXPECT_EQ(*used.rbegin(), nb * N * B - 1);  // a prefix of the windows, the remainder dropped
  }
}

TEST_F(ValLoaderTest, Errors) {
  const std::string pattern = make({100}, 10);
  EXPECT_EQ(error_of([&] { ValLoader v(pattern, 101, 1, 8, 0, 1); }),
            pattern + ": val_tokens 101 is more than the 100 tokens the val shards hold");
  EXPECT_EQ(
      error_of([&] { ValLoader v(pattern, 30, 2, 8, 0, 2); }),
      pattern + ": val_tokens 30 make 3 windows of T = 8, fewer than one batch of world x B = 4");
  ValLoader v(pattern, 100, 1, 8, 0, 1);
  std::vector<int32_t> buf(9);
  EXPECT_EQ(error_of([&] { v.batch(v.num_batches(), buf.data()); }),
            "val loader: batch 12 is out of range [0, 12)");
}

}  // namespace
}  // namespace muongpt
