#include "data/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace muongpt {

static_assert(std::endian::native == std::endian::little,
              "shards are little-endian; this reader maps them directly");

namespace {

int32_t header_word(const uint8_t* header, int i) {
  int32_t v;
  std::memcpy(&v, header + 4 * i, 4);
  return v;
}

// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

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

Shard::Shard(const std::string& path) : path_(path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) fail(path, "no such file");
    fail(path, "cannot open: ", std::strerror(errno));
  }
  struct stat st;
  if (::fstat(f.fd, &st) != 0) fail(path, "cannot stat: ", std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail(path, "is a directory, not a shard file");
  if (!S_ISREG(st.st_mode)) fail(path, "is not a regular file");
  const int64_t size = st.st_size;

  uint8_t header[kShardHeaderBytes] = {};
  const int64_t want = std::min<int64_t>(size, kShardHeaderBytes);
  int64_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(f.fd, header + got, static_cast<size_t>(want - got), got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      fail(path, "cannot read the header: ", n < 0 ? std::strerror(errno) : "end of file");
    got += n;
  }
  count_ = check_shard_header(path, header, size);

  map_bytes_ = size;
  void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, f.fd, 0);
  if (m == MAP_FAILED) fail(path, "cannot memory-map ", size, " bytes: ", std::strerror(errno));
  map_ = m;
  tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(m) + kShardHeaderBytes);
}

Shard::~Shard() {
  release();
}

void Shard::release() {
  if (map_) ::munmap(map_, static_cast<size_t>(map_bytes_));
  map_ = nullptr;
  tokens_ = nullptr;
  map_bytes_ = 0;
  count_ = 0;
}

Shard::Shard(Shard&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      tokens_(o.tokens_),
      count_(o.count_) {
  o.map_ = nullptr;
  o.tokens_ = nullptr;
  o.map_bytes_ = 0;
  o.count_ = 0;
}

Shard& Shard::operator=(Shard&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    count_ = o.count_;
    o.map_ = nullptr;
    o.tokens_ = nullptr;
    o.map_bytes_ = 0;
    o.count_ = 0;
  }
  return *this;
}

void Shard::check_tokens(int64_t vocab_size) const {
  for (int64_t i = 0; i < count_; ++i)
    if (tokens_[i] >= vocab_size)
      fail(path_, "token id ", tokens_[i], " at position ", i, " is outside the vocabulary (ids < ",
           vocab_size, ")");
}

void write_shard(const std::string& path, const uint16_t* tokens, int64_t count) {
  if (count < 0 || count > kShardMaxTokens)
    fail(path, "cannot write ", count, " tokens: a shard holds 0 to ", kShardMaxTokens);
  MG_CHECK(tokens != nullptr || count == 0);
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(tmp, "cannot create: ", std::strerror(errno));
  int32_t header[kShardHeaderWords] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<int32_t>(count);
  bool ok = std::fwrite(header, sizeof(header), 1, f) == 1;
  if (ok && count > 0)
    ok = std::fwrite(tokens, sizeof(uint16_t), static_cast<size_t>(count), f) ==
         static_cast<size_t>(count);
  ok = (std::fflush(f) == 0) && ok;
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(tmp, "write failed: ", std::strerror(err ? err : EIO));
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
  const uint16_t* t = shard.tokens();
  for (int64_t i = 0; i < s.tokens; ++i) ++hist[t[i]];
  s.documents = hist[kEot];
  for (int64_t id = vocab_size; id < 65536; ++id) s.out_of_vocab += hist[id];
  if (s.out_of_vocab > 0)
    for (int64_t i = 0; i < s.tokens; ++i)
      if (t[i] >= vocab_size) {
        s.first_out_of_vocab = i;
        break;
      }
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
