// The distributed training loader and the validation loader (docs/data.md has the full rules).
//
// The train shards (a glob, sorted) form one global stream of windows of T+1 tokens. Every rank
// computes the same stream and takes its own slice of each global batch: call c on rank r of N
// returns windows [(c·N + r)·B, (c·N + r + 1)·B), so the ranks' batches of one call, concatenated
// in rank order, are the batch of a 1-rank loader with batch N·B, and the stream does not depend
// on N or B. Windows cross shard boundaries. In the contiguous and bos-aligned modes the stream
// walks the shards and the next epoch begins when it runs out (a deterministic function of the
// seed and the epoch number); in the random mode window i starts at a seeded random position.
//
// Shards are read with pread(2) from open files, so a shard truncated under a running job is an
// Error thrown by next() or batch() on the caller's thread, never a signal.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/shard.h"

namespace muongpt {

enum class SampleMode {
  contiguous,   // windows every T tokens: [p, p+T+1), [p+T, p+2T+1), ...
  bos_aligned,  // every window starts at an EOT: the first EOT at or after the previous start + T
  random,       // window i starts at a uniformly random position, a function of (seed, i)
};
const char* sample_mode_name(SampleMode mode);
// "contiguous", "bos-aligned" (also "bos_aligned") or "random"; an Error naming `where` otherwise.
SampleMode parse_sample_mode(const std::string& name, const std::string& where);

struct LoaderOptions {
  std::string pattern;  // glob of train shards, e.g. "data/fineweb_train_*.bin"
  int64_t batch = 0;    // B: sequences per rank per call
  int64_t seq = 0;      // T: each sequence holds T+1 tokens
  int rank = 0;
  int world = 1;
  SampleMode mode = SampleMode::contiguous;
  uint64_t seed = 0;          // shard order and offset of epochs >= 1; the random mode's draws
  bool prefetch = true;       // prepare the next batch on a background thread
  bool check_tokens = false;  // scan every token once for ids >= vocab_size
  int64_t vocab_size = kGpt2Vocab;
};

// Where the next global batch starts in the stream; the same on every rank, and independent of
// B and the world size (a run may resume with others). The fingerprint fields (mode, seq, seed,
// files, total_tokens) are checked against the loader on restore.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t offset = 0;  // token offset in the epoch's stream where the search for the next window
                       // begins (contiguous: the window's start; bos-aligned: the first EOT at or
                       // after it; random: 0)
  int64_t window = 0;  // random: windows drawn so far, the index of the next one (else 0); the
                       // epoch is then floor(window · T / total_tokens)
  SampleMode mode = SampleMode::contiguous;
  int64_t seq = 0;
  uint64_t seed = 0;
  int64_t files = 0;
  int64_t total_tokens = 0;
  std::string source;  // where it was read from, for error messages (not saved)

  nlohmann::json to_json() const;
  static LoaderPosition from_json(const nlohmann::json& j, const std::string& where);
  bool operator==(const LoaderPosition& o) const {
    return epoch == o.epoch && offset == o.offset && window == o.window && mode == o.mode &&
           seq == o.seq && seed == o.seed && files == o.files && total_tokens == o.total_tokens;
  }
};

class DataLoader {
 public:
  // Expands the pattern, opens and validates every shard (Error naming the file), and checks
  // that the stream holds at least one window.
  explicit DataLoader(const LoaderOptions& options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Fills tokens [B, T+1] (int32): inputs are [:, :T], targets [:, 1:]. A read error (a shard
  // that shrank since it was opened, say) is thrown here, also when the prefetch thread met it.
  void next(int32_t* tokens);
  // Position of the next batch next() returns (not of one the prefetch thread already holds).
  LoaderPosition position() const;
  void restore(const LoaderPosition& position);
  int64_t epoch() const;  // epoch (0-based) of the next batch's first window
  int64_t total_tokens() const;
  const std::vector<std::string>& files() const;
  const LoaderOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits loader windows [B, T+1] into model inputs idx [B, T] and targets tgt [B, T] (the same
// windows shifted by one token).
void split_windows(const int32_t* windows, int64_t B, int64_t T, int32_t* idx, int32_t* tgt);

// The first val_tokens tokens of the val shards (sorted, concatenated) as consecutive windows of
// T+1 tokens with stride T; rank r takes windows r, r+N, r+2N, ... and batch i of rank r holds
// its windows [i·B, (i+1)·B). Every rank has the same num_batches() (the remainder is dropped).
class ValLoader {
 public:
  ValLoader(const std::string& pattern, int64_t val_tokens, int64_t batch, int64_t seq, int rank,
            int world);
  ~ValLoader();
  ValLoader(ValLoader&&) noexcept;
  ValLoader& operator=(ValLoader&&) noexcept;
  int64_t num_batches() const;
  // Fills batch i; a read error (a shard that shrank since it was opened) is thrown here.
  void batch(int64_t i, int32_t* tokens /* [B, T+1] */) const;
  int64_t windows() const;  // windows before the split: min(val_tokens, tokens - 1) / T

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace muongpt
