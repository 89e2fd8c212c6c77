#include "data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/files.h"
#include "core/rng.h"

namespace muongpt {

using json = nlohmann::json;

const char* sample_mode_name(SampleMode mode) {
  switch (mode) {
    case SampleMode::contiguous:
      return "contiguous";
    case SampleMode::bos_aligned:
      return "bos-aligned";
    case SampleMode::random:
      return "random";
  }
  return "unknown";
}

SampleMode parse_sample_mode(const std::string& name, const std::string& where) {
  if (name == "contiguous") return SampleMode::contiguous;
  if (name == "bos-aligned" || name == "bos_aligned") return SampleMode::bos_aligned;
  if (name == "random") return SampleMode::random;
  fail(where, "unknown sample mode '", name, "' (expected contiguous, bos-aligned or random)");
}

json LoaderPosition::to_json() const {
  return json{
      {"epoch", epoch}, {"offset", offset}, {"window", window}, {"mode", sample_mode_name(mode)},
      {"seq", seq},     {"seed", seed},     {"files", files},   {"total_tokens", total_tokens}};
}

LoaderPosition LoaderPosition::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail(where, "loader position is not a JSON object");
  auto integer = [&](const char* key) -> int64_t {
    if (!j.contains(key)) fail(where, "loader position has no '", key, "'");
    const json& v = j.at(key);
    if (!v.is_number_integer()) fail(where, "loader position '", key, "' is not an integer");
    const int64_t x = v.get<int64_t>();
    if (x < 0 && v.is_number_integer() && !v.is_number_unsigned())
      fail(where, "loader position '", key, "' is negative (", x, ")");
    return x;
  };
  LoaderPosition p;
  p.epoch = integer("epoch");
  p.offset = integer("offset");
  p.seq = integer("seq");
  p.files = integer("files");
  p.total_tokens = integer("total_tokens");
  if (!j.contains("seed") || !j.at("seed").is_number_integer())
    fail(where, "loader position has no integer 'seed'");
  p.seed = j.at("seed").get<uint64_t>();
  if (!j.contains("mode") || !j.at("mode").is_string())
    fail(where, "loader position has no string 'mode'");
  p.mode = parse_sample_mode(j.at("mode").get<std::string>(), where);
  // Positions saved before the random mode existed have no "window"; that mode needs it.
  if (j.contains("window") || p.mode == SampleMode::random) p.window = integer("window");
  p.source = where;
  return p;
}

namespace {

// The shards of a pattern, and reads from their concatenation in a given order.
struct ShardSet {
  std::vector<std::string> files;
  std::vector<Shard> shards;
  int64_t total = 0;

  explicit ShardSet(const std::string& pattern) : files(expand_glob(pattern)) {
    raise_open_file_limit(static_cast<int64_t>(files.size()));  // each Shard keeps its file open
    shards.reserve(files.size());
    for (const std::string& f : files) {
      shards.emplace_back(f);
      total += shards.back().size();
    }
  }
};

// One epoch's view of the stream: the shards in `perm` order, and the offset its first window
// search starts at.
struct EpochOrder {
  std::vector<int> perm;
  std::vector<int64_t> starts;  // [shards + 1] prefix sums of the permuted sizes
  int64_t offset = 0;
};

EpochOrder make_order(const ShardSet& set, int64_t epoch, uint64_t seed, int64_t seq) {
  EpochOrder o;
  const int n = static_cast<int>(set.shards.size());
  o.perm.resize(n);
  for (int i = 0; i < n; ++i) o.perm[i] = i;
  if (epoch > 0) {
    // Epochs after the first: a seeded shuffle of the shards and a window offset in [0, T), so
    // that the windows of one epoch do not repeat the boundaries of the last.
    Rng rng(seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch)));
    for (int i = n - 1; i > 0; --i) std::swap(o.perm[i], o.perm[rng.below(uint64_t(i) + 1)]);
    // At most total - T - 1, so that one window always fits after it.
    o.offset = static_cast<int64_t>(rng.below(uint64_t(std::min(seq, set.total - seq))));
  }
  o.starts.resize(n + 1);
  o.starts[0] = 0;
  for (int i = 0; i < n; ++i) o.starts[i + 1] = o.starts[i] + set.shards[o.perm[i]].size();
  return o;
}

// Index into o.perm of the shard holding stream position p (0 <= p < total).
int shard_at(const EpochOrder& o, int64_t p) {
  auto it = std::upper_bound(o.starts.begin(), o.starts.end(), p);
  return static_cast<int>(it - o.starts.begin()) - 1;
}

// out[0, n) = stream tokens [p, p + n): one read per shard the run touches.
void read_stream(const ShardSet& set, const EpochOrder& o, int64_t p, int64_t n, uint16_t* out) {
  int i = shard_at(o, p);
  while (n > 0) {
    const Shard& s = set.shards[o.perm[i]];
    const int64_t local = p - o.starts[i];
    const int64_t take = std::min(n, s.size() - local);
    s.read(local, take, out);
    out += take;
    p += take;
    n -= take;
    ++i;
  }
}

// Reads of an epoch's stream through a buffer. The sequential modes ask for read-ahead, so that
// a batch costs a few large reads rather than one or two per window (a system call each); a
// file that shrinks is then noticed at the next refill.
class StreamReader {
 public:
  explicit StreamReader(const ShardSet& set) : set_(set) {}

  // Tokens [p, p + n) of epoch `epoch`'s stream (order o), valid until the next call; a refill
  // reads at least `ahead` tokens (fewer at the end of the stream).
  const uint16_t* get(const EpochOrder& o, int64_t epoch, int64_t p, int64_t n, int64_t ahead) {
    if (epoch != epoch_ || p < begin_ || p + n > end_) {
      const int64_t len = std::min(set_.total - p, std::max(n, ahead));
      if (buf_.size() < static_cast<size_t>(len)) buf_.resize(static_cast<size_t>(len));
      epoch_ = -1;  // until the read succeeds
      read_stream(set_, o, p, len, buf_.data());
      epoch_ = epoch;
      begin_ = p;
      end_ = p + len;
    }
    return buf_.data() + (p - begin_);
  }

 private:
  const ShardSet& set_;
  std::vector<uint16_t> buf_;
  int64_t epoch_ = -1, begin_ = 0, end_ = 0;
};

// Read-ahead of the sequential modes, in tokens (256 kB).
constexpr int64_t kReadAhead = int64_t(1) << 17;

// The first position q >= p holding EOT, or set.total when there is none.
int64_t next_eot(const ShardSet& set, StreamReader& reader, const EpochOrder& o, int64_t epoch,
                 int64_t p, int64_t ahead) {
  constexpr int64_t kStep = 4096;
  for (; p < set.total; p += kStep) {
    const int64_t n = std::min(kStep, set.total - p);
    const uint16_t* t = reader.get(o, epoch, p, n, ahead);
    const uint16_t* hit = std::find(t, t + n, static_cast<uint16_t>(kEot));
    if (hit != t + n) return p + (hit - t);
  }
  return set.total;
}

// Where the stream stands. contiguous and bos-aligned: (epoch, offset); random: the index of
// the next window, with its epoch.
struct Cursor {
  int64_t epoch = 0;
  int64_t offset = 0;
  int64_t window = 0;
};

struct Prepared {
  std::vector<int32_t> tokens;        // [B, T+1]
  Cursor end;                         // where the next global batch starts
  std::vector<int64_t> epochs_begun;  // epochs whose first window is in this global batch
};

}  // namespace

struct DataLoader::Impl {
  LoaderOptions opt;
  ShardSet set;
  // Used by the one thread that computes batches.
  std::map<int64_t, EpochOrder> orders;
  StreamReader reader{set};
  int64_t ahead = 0;  // tokens a refill reads

  // Shared with the prefetch thread, under mu.
  mutable std::mutex mu;
  std::condition_variable cv;
  Cursor pos;          // start of the next batch next() returns
  bool ready = false;  // `slot` holds the batch that starts at `pos`
  Prepared slot;
  uint64_t generation = 0;   // bumped by restore(): a batch of an older one is discarded
  std::exception_ptr error;  // what the prefetch thread threw
  bool stop = false;
  std::thread worker;

  // contiguous: this rank's windows of a call are one run of B·T + 1 tokens; bos-aligned scans
  // every rank's windows.
  explicit Impl(const LoaderOptions& o)
      : opt(o),
        set(o.pattern),
        ahead(o.mode == SampleMode::contiguous ? std::min(kReadAhead, o.batch * o.seq + 1)
                                               : kReadAhead) {}

  const EpochOrder& order(int64_t epoch) {
    auto it = orders.find(epoch);
    if (it != orders.end()) return it->second;
    if (orders.size() >= 4) orders.erase(orders.begin());
    return orders.emplace(epoch, make_order(set, epoch, opt.seed, opt.seq)).first->second;
  }

  // random: the epoch of window w, floor(w·T / total) (T new tokens per window, as contiguous).
  int64_t random_epoch(int64_t w) const { return w * opt.seq / set.total; }

  // random: window w's start, uniform over the total - T starts that leave room for T+1 tokens.
  // Element w of a SplitMix64 sequence keyed by the seed, so that any window is computed
  // directly; the modulo's bias is below starts / 2^64. The key's constant (√2's fraction bits)
  // keeps these draws apart from the epoch shuffles of the same seed.
  int64_t random_start(int64_t w) const {
    const uint64_t key = opt.seed ^ 0x6A09E667F3BCC908ull;
    const uint64_t starts = static_cast<uint64_t>(set.total - opt.seq);
    return static_cast<int64_t>(splitmix64_at(key, static_cast<uint64_t>(w)) % starts);
  }

  // Moves c to the epoch that holds its next window and returns that window's start.
  int64_t locate(Cursor& c) {
    if (opt.mode == SampleMode::random) return random_start(c.window);
    const int64_t need = opt.seq + 1;
    for (;;) {
      const EpochOrder& o = order(c.epoch);
      const int64_t s = opt.mode == SampleMode::contiguous
                            ? c.offset
                            : next_eot(set, reader, o, c.epoch, c.offset, ahead);
      if (s + need <= set.total) return s;
      if (c.offset <= o.offset)
        fail(opt.pattern, "epoch ", c.epoch, " has no window of ", need,
             " tokens starting at an EOT (", kEot,
             "): bos-aligned sampling needs documents that begin with EOT");
      c = Cursor{c.epoch + 1, order(c.epoch + 1).offset};
    }
  }

  // The batch of this rank in the global batch that starts at `start`.
  Prepared compute(Cursor start) {
    Prepared p;
    const int64_t B = opt.batch, W = opt.seq + 1;
    p.tokens.resize(static_cast<size_t>(B * W));
    const int64_t first = int64_t(opt.rank) * B, last = first + B;
    const int64_t global = int64_t(opt.world) * B;
    if (opt.mode == SampleMode::random) {
      // Windows [w0, w0 + global) of the stream; only this rank's need computing. Each is one
      // read (no read-ahead: the next window is elsewhere).
      const int64_t w0 = start.window;
      for (int64_t k = first; k < last; ++k) {
        const uint16_t* t = reader.get(order(0), 0, random_start(w0 + k), W, W);
        std::copy(t, t + W, p.tokens.data() + (k - first) * W);
      }
      const int64_t before = w0 == 0 ? 0 : random_epoch(w0 - 1);
      for (int64_t e = before + 1; e <= random_epoch(w0 + global - 1); ++e)
        p.epochs_begun.push_back(e);
      p.end = Cursor{random_epoch(w0 + global), 0, w0 + global};
      return p;
    }
    Cursor c = start;
    for (int64_t k = 0; k < global; ++k) {
      const int64_t s = locate(c);
      const EpochOrder& o = order(c.epoch);
      if (c.epoch > 0 && c.offset == o.offset) p.epochs_begun.push_back(c.epoch);
      if (k >= first && k < last) {
        const uint16_t* t = reader.get(o, c.epoch, s, W, ahead);
        std::copy(t, t + W, p.tokens.data() + (k - first) * W);
      }
      c.offset = s + opt.seq;
    }
    locate(c);  // so that position() and epoch() name the epoch the next window is in
    p.end = c;
    return p;
  }

  void run_worker() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [&] { return stop || (!ready && !error); });
      if (stop) return;
      const uint64_t gen = generation;
      const Cursor start = pos;
      lock.unlock();
      Prepared p;
      std::exception_ptr e;
      try {
        p = compute(start);
      } catch (...) {
        e = std::current_exception();
      }
      lock.lock();
      if (gen != generation) continue;  // restore() moved the position meanwhile
      if (e) {
        error = e;
      } else {
        slot = std::move(p);
        ready = true;
      }
      cv.notify_all();
    }
  }

  LoaderPosition make_position(const Cursor& c) const {
    LoaderPosition p;
    p.epoch = c.epoch;
    p.offset = c.offset;
    p.window = c.window;
    p.mode = opt.mode;
    p.seq = opt.seq;
    p.seed = opt.seed;
    p.files = static_cast<int64_t>(set.files.size());
    p.total_tokens = set.total;
    return p;
  }
};

DataLoader::DataLoader(const LoaderOptions& o) {
  const std::string where = o.pattern.empty() ? std::string("loader") : o.pattern;
  if (o.batch < 1) fail(where, "loader batch must be at least 1 (got ", o.batch, ")");
  if (o.seq < 1) fail(where, "loader sequence length must be at least 1 (got ", o.seq, ")");
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world)
    fail(where, "loader rank ", o.rank, " is not in [0, world size ", o.world, ")");
  impl_ = std::make_unique<Impl>(o);
  Impl& m = *impl_;
  if (o.check_tokens)
    for (const Shard& s : m.set.shards) s.check_tokens(o.vocab_size);
  if (m.set.total < o.seq + 1)
    fail(o.pattern, "the shards hold ", m.set.total,
         " tokens in all, fewer than one window of T+1 = ", o.seq + 1);
  m.locate(m.pos);  // bos-aligned: fails here when there is no window at all
  if (o.prefetch) m.worker = std::thread([this] { impl_->run_worker(); });
}

DataLoader::~DataLoader() {
  if (impl_ && impl_->worker.joinable()) {
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->stop = true;
    }
    impl_->cv.notify_all();
    impl_->worker.join();
  }
}

void DataLoader::next(int32_t* tokens) {
  Impl& m = *impl_;
  Prepared p;
  if (m.opt.prefetch) {
    std::unique_lock<std::mutex> lock(m.mu);
    m.cv.wait(lock, [&] { return m.ready || m.error; });
    if (m.error) std::rethrow_exception(m.error);
    p = std::move(m.slot);
    m.ready = false;
    m.pos = p.end;
    m.cv.notify_all();  // the worker prepares the batch after this one
  } else {
    p = m.compute(m.pos);
    m.pos = p.end;
  }
  std::copy(p.tokens.begin(), p.tokens.end(), tokens);
  if (m.opt.rank == 0)
    for (int64_t e : p.epochs_begun)
      std::fprintf(stderr, "muongpt: note: %s: epoch %lld begins\n", m.opt.pattern.c_str(),
                   static_cast<long long>(e));
}

LoaderPosition DataLoader::position() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->make_position(impl_->pos);
}

void DataLoader::restore(const LoaderPosition& p) {
  Impl& m = *impl_;
  const std::string where = p.source.empty() ? m.opt.pattern : p.source;
  const LoaderPosition mine = m.make_position(Cursor{});
  auto mismatch = [&](const char* what, auto saved, auto here) {
    fail(where, "loader position was saved with ", what, " ", saved, ", this loader has ", here);
  };
  if (p.mode != mine.mode) mismatch("mode", sample_mode_name(p.mode), sample_mode_name(mine.mode));
  if (p.seq != mine.seq) mismatch("seq", p.seq, mine.seq);
  if (p.seed != mine.seed) mismatch("seed", p.seed, mine.seed);
  if (p.files != mine.files) mismatch("files", p.files, mine.files);
  if (p.total_tokens != mine.total_tokens)
    mismatch("total_tokens", p.total_tokens, mine.total_tokens);
  if (m.opt.mode == SampleMode::random) {
    // The window index is the position; epoch and offset must agree with it. The bound leaves
    // w·T (the epoch's numerator) room to grow for as many windows again.
    const int64_t max_window = std::numeric_limits<int64_t>::max() / m.opt.seq / 2;
    if (p.window < 0 || p.window > max_window || p.offset != 0 ||
        p.epoch != m.random_epoch(p.window))
      fail(where, "loader position window ", p.window, " epoch ", p.epoch, " offset ", p.offset,
           " is out of range or inconsistent");
  } else if (p.epoch < 0 || p.offset < 0 || p.offset > m.set.total || p.window != 0) {
    fail(where, "loader position epoch ", p.epoch, " offset ", p.offset, " is out of range");
  }
  std::lock_guard<std::mutex> lock(m.mu);
  m.pos = Cursor{p.epoch, p.offset, p.window};
  m.ready = false;
  m.error = nullptr;
  ++m.generation;
  m.cv.notify_all();
}

int64_t DataLoader::epoch() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->pos.epoch;
}

int64_t DataLoader::total_tokens() const {
  return impl_->set.total;
}
const std::vector<std::string>& DataLoader::files() const {
  return impl_->set.files;
}
const LoaderOptions& DataLoader::options() const {
  return impl_->opt;
}

// --- validation -------------------------------------------------------------------------------

struct ValLoader::Impl {
  ShardSet set;
  EpochOrder order;
  int64_t batch, seq, windows;
  int rank, world;
  int64_t batches;
  explicit Impl(const std::string& pattern) : set(pattern) {}
};

ValLoader::ValLoader(const std::string& pattern, int64_t val_tokens, int64_t batch, int64_t seq,
                     int rank, int world) {
  if (batch < 1 || seq < 1) fail(pattern, "val batch and seq must be at least 1");
  if (world < 1 || rank < 0 || rank >= world)
    fail(pattern, "val loader rank ", rank, " is not in [0, world size ", world, ")");
  if (val_tokens < 1) fail(pattern, "val_tokens must be positive (got ", val_tokens, ")");
  impl_ = std::make_unique<Impl>(pattern);
  Impl& m = *impl_;
  if (val_tokens > m.set.total)
    fail(pattern, "val_tokens ", val_tokens, " is more than the ", m.set.total,
         " tokens the val shards hold");
  m.order = make_order(m.set, 0, 0, seq);
  m.batch = batch;
  m.seq = seq;
  m.rank = rank;
  m.world = world;
  // A window's inputs are tokens [kT, kT+T) of the first val_tokens; its last target must exist.
  m.windows = std::min(val_tokens, m.set.total - 1) / seq;
  m.batches = m.windows / (int64_t(world) * batch);
  if (m.batches == 0)
    fail(pattern, "val_tokens ", val_tokens, " make ", m.windows, " windows of T = ", seq,
         ", fewer than one batch of world x B = ", int64_t(world) * batch);
}

ValLoader::~ValLoader() = default;
ValLoader::ValLoader(ValLoader&&) noexcept = default;
ValLoader& ValLoader::operator=(ValLoader&&) noexcept = default;
int64_t ValLoader::num_batches() const {
  return impl_->batches;
}
int64_t ValLoader::windows() const {
  return impl_->windows;
}

void ValLoader::batch(int64_t i, int32_t* tokens) const {
  const Impl& m = *impl_;
  if (i < 0 || i >= m.batches)
    fail("val loader", "batch ", i, " is out of range [0, ", m.batches, ")");
  // A reader per call (batch() is const and may run on several threads). One rank's windows are
  // consecutive, so it reads the batch's span at once; with more ranks, each window alone.
  StreamReader reader(m.set);
  const int64_t W = m.seq + 1, ahead = m.world == 1 ? m.batch * m.seq + 1 : W;
  for (int64_t j = 0; j < m.batch; ++j) {
    const int64_t k = (i * m.batch + j) * m.world + m.rank;
    const uint16_t* t = reader.get(m.order, 0, k * m.seq, W, ahead);
    std::copy(t, t + W, tokens + j * W);
  }
}

void split_windows(const int32_t* windows, int64_t B, int64_t T, int32_t* idx, int32_t* tgt) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      idx[b * T + t] = windows[b * (T + 1) + t];
      tgt[b * T + t] = windows[b * (T + 1) + t + 1];
    }
}

}  // namespace muongpt
