// Token shards in the format llm.c and modded-nanogpt read and write (the FineWeb shards of
// kjj0/fineweb10B-gpt2 are such files):
//
//   bytes [0, 1024)   256 little-endian int32 header words: [0] = 20240520 (magic),
//                     [1] = 1 (version), [2] = token count, the rest zero
//   bytes [1024, ...) `count` little-endian uint16 token ids
//
// A Shard validates the header and the file size when it is opened and reads tokens with pread(2)
// from the open file; every problem is an Error naming the file. Offsets are 64-bit throughout.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/files.h"

namespace muongpt {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int64_t kShardHeaderWords = 256;
constexpr int64_t kShardHeaderBytes = kShardHeaderWords * 4;  // 1024
constexpr int32_t kEot = 50256;                  // <|endoftext|>, starts every document
constexpr int64_t kGpt2Vocab = 50257;            // GPT-2 token ids are < this
constexpr int64_t kShardMaxTokens = 2147483647;  // the count is an int32

// Checks a shard header (the first min(size, 1024) bytes of a file of `file_size` bytes) and
// returns the token count; throws Error(path, ...) for a short header, wrong magic, unsupported
// version, negative count, or a size that does not match the count. Pure: no I/O.
int64_t check_shard_header(const std::string& path, const uint8_t* header, int64_t file_size);

class Shard {
 public:
  // Opens `path` (a regular file; opening never blocks), validates the header and the size (not
  // the token values) and keeps the file open: reads use pread(2), never a memory mapping, so a
  // file truncated under a running job is an Error on the reading thread, not a SIGBUS.
  explicit Shard(const std::string& path);
  Shard(Shard&& o) noexcept
      : path_(std::move(o.path_)), fd_(std::move(o.fd_)), count_(std::exchange(o.count_, 0)) {}
  Shard& operator=(Shard&& o) noexcept {
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
    count_ = std::exchange(o.count_, 0);
    return *this;
  }

  int64_t size() const { return count_; }  // number of tokens
  const std::string& path() const { return path_; }
  // Copies tokens [first, first + n) into out (0 <= first, first + n <= size()). A file that
  // became shorter since it was opened is an Error "<path>: the file shrank from N to M bytes
  // while in use". Safe to call from several threads.
  void read(int64_t first, int64_t n, uint16_t* out) const;
  uint16_t token(int64_t i) const;  // one token (a system call: use read() for runs)
  // Throws Error(path, ...) naming the first token id >= vocab_size and its position.
  void check_tokens(int64_t vocab_size = kGpt2Vocab) const;

 private:
  std::string path_;
  FileDescriptor fd_;
  int64_t count_ = 0;
};

// Writes a shard atomically: to `path.tmp`, then renamed to `path`. Errors name the path.
void write_shard(const std::string& path, const uint16_t* tokens, int64_t count);

// Files matching a glob pattern, sorted bytewise. An Error naming the pattern when it matches
// nothing (for a plain path that does not exist: "no such file").
std::vector<std::string> expand_glob(const std::string& pattern);

// What `muongpt shard-info` prints about a shard.
struct ShardStats {
  int64_t tokens = 0;
  int64_t documents = 0;                         // number of EOT tokens
  std::vector<std::pair<int32_t, int64_t>> top;  // (token id, count), most frequent first
  double p_max = 0;                              // top token frequency (0 when empty)
  int64_t out_of_vocab = 0;                      // tokens >= vocab_size
  int64_t first_out_of_vocab = -1;               // position of the first one, or -1
  int32_t first_out_of_vocab_id = -1;            // its id, or -1
};
ShardStats shard_stats(const Shard& shard, int64_t vocab_size = kGpt2Vocab, int top_k = 10);

}  // namespace muongpt
