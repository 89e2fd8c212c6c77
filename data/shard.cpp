#include "data/shard.h"

#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/files.h"

namespace muongpt {

static_assert(std::endian::native == std::endian::little,
              "shards are little-endian; this reader copies their bytes as they are");

namespace {

int32_t header_word(const uint8_t* header, int i) {
  int32_t v;
  std::memcpy(&v, header + 4 * i, 4);
  return v;
}

// Tokens per read when a whole shard is scanned (4 MB of buffer).
constexpr int64_t kScanChunk = int64_t(1) << 21;

// Calls f(first, tokens, n) for consecutive chunks covering the whole shard.
template <typename F>
void scan(const Shard& shard, F&& f) {
  std::vector<uint16_t> buf(static_cast<size_t>(std::min(shard.size(), kScanChunk)));
  for (int64_t first = 0; first < shard.size(); first += kScanChunk) {
    const int64_t n = std::min(kScanChunk, shard.size() - first);
    shard.read(first, n, buf.data());
    f(first, buf.data(), n);
  }
}

}  // namespace

int64_t check_shard_header(const std::string& path, const uint8_t* header, int64_t file_size) {
  if (file_size < kShardHeaderBytes)
    fail(path, "short header: the file has ", file_size, " bytes, a shard header needs ",
         kShardHeaderBytes);
  const int32_t magic = header_word(header, 0);
  if (magic != kShardMagic)
    fail(path, "wrong magic number ", magic, " (expected ", kShardMagic, "): not a token shard");
  const int32_t version = header_word(header, 1);
  if (version != kShardVersion)
    fail(path, "unsupported shard version ", version, " (this reader knows version ", kShardVersion,
         ": uint16 GPT-2 tokens)");
  const int64_t count = header_word(header, 2);
  if (count < 0) fail(path, "negative token count ", count, " in the header");
  const int64_t expected = kShardHeaderBytes + 2 * count;
  if (file_size != expected)
    fail(path, "size does not match the header: ", count, " tokens need ", expected,
         " bytes, the file has ", file_size,
         file_size < expected ? " (truncated)" : " (extra bytes)");
  return count;
}

Shard::Shard(const std::string& path) : path_(path), fd_(open_regular_file(path)) {
  const int64_t size = file_size(fd_.get(), path);
  uint8_t header[kShardHeaderBytes] = {};
  const int64_t want = std::min<int64_t>(size, kShardHeaderBytes);
  if (read_at(fd_.get(), path, 0, header, want) != want)
    fail(path, "the file shrank while its header was read");
  count_ = check_shard_header(path, header, size);
}

void Shard::read(int64_t first, int64_t n, uint16_t* out) const {
  MG_CHECK(first >= 0 && n >= 0 && first + n <= count_, path_, " [", first, ", ", first + n, ")");
  const int64_t offset = kShardHeaderBytes + 2 * first;
  const int64_t got = read_at(fd_.get(), path_, offset, out, 2 * n);
  if (got == 2 * n) return;
  const int64_t expected = kShardHeaderBytes + 2 * count_;
  const int64_t now = file_size(fd_.get(), path_);
  if (now < expected)
    fail(path_, "the file shrank from ", expected, " to ", now, " bytes while in use");
  fail(path_, "a read of ", 2 * n, " bytes at byte ", offset, " returned ", got,
       ": the file changed while in use");
}

uint16_t Shard::token(int64_t i) const {
  uint16_t t;
  read(i, 1, &t);
  return t;
}

void Shard::check_tokens(int64_t vocab_size) const {
  scan(*this, [&](int64_t first, const uint16_t* t, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      if (t[i] >= vocab_size)
        fail(path_, "token id ", t[i], " at position ", first + i,
             " is outside the vocabulary (ids < ", vocab_size, ")");
  });
}

void write_shard(const std::string& path, const uint16_t* tokens, int64_t count) {
  if (count < 0 || count > kShardMaxTokens)
    fail(path, "cannot write ", count, " tokens: a shard holds 0 to ", kShardMaxTokens);
  MG_CHECK(tokens != nullptr || count == 0);
  const std::string tmp = path + ".tmp";
  int32_t header[kShardHeaderWords] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(count);
  FileDescriptor f = create_regular_file(tmp);  // an error here leaves what is at tmp alone
  try {
    write_all(f.get(), tmp, header, sizeof(header));
    write_all(f.get(), tmp, tokens, 2 * count);
    if (::close(f.release()) != 0) fail(tmp, "write failed: ", std::strerror(errno));
  } catch (const Error&) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(path, "cannot rename ", tmp, " into place: ", std::strerror(e));
  }
}

std::vector<std::string> expand_glob(const std::string& pattern) {
  if (pattern.empty()) fail("data", "empty file pattern");
  const bool wildcard = pattern.find_first_of("*?[") != std::string::npos;
  if (!wildcard) {
    std::error_code ec;
    if (!std::filesystem::exists(pattern, ec)) fail(pattern, "no such file");
    return {pattern};
  }
  glob_t g;
  std::memset(&g, 0, sizeof(g));
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  if (rc == GLOB_NOSPACE) fail(pattern, "out of memory expanding the pattern");
  if (out.empty()) fail(pattern, "matches no files");
  std::sort(out.begin(), out.end());
  return out;
}

ShardStats shard_stats(const Shard& shard, int64_t vocab_size, int top_k) {
  ShardStats s;
  s.tokens = shard.size();
  std::vector<int64_t> hist(65536, 0);
  scan(shard, [&](int64_t first, const uint16_t* t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) ++hist[t[i]];
    if (s.first_out_of_vocab < 0)
      for (int64_t i = 0; i < n; ++i)
        if (t[i] >= vocab_size) {
          s.first_out_of_vocab = first + i;
          s.first_out_of_vocab_id = t[i];
          break;
        }
  });
  s.documents = hist[kEot];
  for (int64_t id = vocab_size; id < 65536; ++id) s.out_of_vocab += hist[id];
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < 65536; ++id)
    if (hist[id] > 0) ids.push_back(id);
  const size_t k = std::min<size_t>(static_cast<size_t>(std::max(top_k, 0)), ids.size());
  std::partial_sort(
      ids.begin(), ids.begin() + static_cast<long>(k), ids.end(),
      [&](int32_t a, int32_t b) { return hist[a] != hist[b] ? hist[a] > hist[b] : a < b; });
  for (size_t i = 0; i < k; ++i) s.top.emplace_back(ids[i], hist[ids[i]]);
  if (s.tokens > 0 && !ids.empty()) {
    const int64_t mx = *std::max_element(hist.begin(), hist.end());
    s.p_max = static_cast<double>(mx) / static_cast<double>(s.tokens);
  }
  return s;
}

}  // namespace muongpt
