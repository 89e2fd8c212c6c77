#include "data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <filesystem>
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "core/files.h"

namespace muongpt {

const std::array<char32_t, 256>& gpt2_byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) t[b] = printable(b) ? char32_t(b) : next++;
    return t;
  }();
  return table;
}

namespace {

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

// --- hashing ----------------------------------------------------------------------------------

inline uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
  }
  return mix(h);
}

// Open-addressing map from token bytes to rank; the bytes live in the tokenizer's arena. Each
// slot keeps 32 bits of the key's hash, so a probe touches the arena only on a likely match.
class BytesToRank {
 public:
  void init(size_t capacity_pow2) {
    slots_.assign(capacity_pow2, Slot{-1, 0});
    mask_ = capacity_pow2 - 1;
  }
  // Returns the rank already holding these bytes, or inserts `rank` and returns -1.
  int32_t insert(std::string_view key, int32_t rank, const std::string& arena,
                 const std::vector<uint32_t>& off) {
    const uint64_t h = hash_bytes(key.data(), key.size());
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot s = slots_[i];
      if (s.rank < 0) {
        slots_[i] = Slot{rank, tag};
        return -1;
      }
      if (s.tag == tag && equal(s.rank, key, arena, off)) return s.rank;
    }
  }
  int32_t find(std::string_view key, const std::string& arena,
               const std::vector<uint32_t>& off) const {
    const uint64_t h = hash_bytes(key.data(), key.size());
    const uint32_t tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot s = slots_[i];
      if (s.rank < 0) return -1;
      if (s.tag == tag && equal(s.rank, key, arena, off)) return s.rank;
    }
  }

 private:
  struct Slot {
    int32_t rank;
    uint32_t tag;
  };
  static bool equal(int32_t r, std::string_view key, const std::string& arena,
                    const std::vector<uint32_t>& off) {
    const uint32_t a = off[r], b = off[r + 1];
    return b - a == key.size() && std::memcmp(arena.data() + a, key.data(), key.size()) == 0;
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Open-addressing map from a pair of adjacent token ids to the id of their concatenation.
class PairToRank {
 public:
  void init(size_t capacity_pow2) {
    keys_.assign(capacity_pow2, kEmpty);
    vals_.assign(capacity_pow2, 0);
    mask_ = capacity_pow2 - 1;
  }
  void insert(int32_t a, int32_t b, int32_t rank) {
    const uint64_t k = key(a, b);
    size_t i = mix(k) & mask_;
    while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & mask_;
    keys_[i] = k;
    vals_[i] = rank;
  }
  // The merged rank, or INT32_MAX when a + b is not a token.
  int32_t find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = mix(k) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == k) return vals_[i];
      if (keys_[i] == kEmpty) return INT32_MAX;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  std::vector<uint64_t> keys_;
  std::vector<int32_t> vals_;
  size_t mask_ = 0;
};

// --- the pre-tokenization pattern -----------------------------------------------------------

// GPT-2's pattern: contractions, an optional space + letters, an optional space + numbers, an
// optional space + other characters, whitespace not followed by a non-space (so that the last
// space of a run joins the next word), other whitespace. `\s` is spelled out as Unicode's
// White_Space property, which is what tiktoken's regex engine means by it: PCRE2's own `\s` is
// ASCII-only without PCRE2_UCP, and spelling the set out makes the pattern mean the same with
// every PCRE2 release. Possessive quantifiers where backtracking cannot change the match.
#define MG_WS            \
  "\\t\\n\\x{0B}\\f\\r " \
  "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
constexpr const char* kPattern =
    "'(?:[sdmt]|ll|ve|re)"
    "| ?\\p{L}++"
    "| ?\\p{N}++"
    "| ?[^" MG_WS
    "\\p{L}\\p{N}]++"
    "|[" MG_WS "]+(?![^" MG_WS
    "])"
    "|[" MG_WS "]++";
#undef MG_WS

struct Pattern {
  pcre2_code* code = nullptr;
  bool jit = false;
  Pattern() {
    int err = 0;
    PCRE2_SIZE at = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                         &err, &at, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("tokenizer", "cannot compile the GPT-2 pattern at ", at, ": ",
           reinterpret_cast<const char*>(msg));
    }
    jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Pattern() { pcre2_code_free(code); }
};

const Pattern& pattern() {
  static const Pattern p;
  return p;
}

// Per-thread match state: match data, and a JIT stack big enough for long whitespace runs.
struct Matcher {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* stack = nullptr;
  Matcher() {
    const Pattern& p = pattern();
    md = pcre2_match_data_create_from_pattern(p.code, nullptr);
    mc = pcre2_match_context_create(nullptr);
    if (p.jit) {
      stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
      pcre2_jit_stack_assign(mc, nullptr, stack);
    }
    if (!md || !mc) fail("tokenizer", "out of memory creating PCRE2 match data");
  }
  ~Matcher() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    if (stack) pcre2_jit_stack_free(stack);
  }
};

Matcher& matcher() {
  thread_local Matcher m;
  return m;
}

// Calls f(piece) for each pre-token of valid UTF-8 text, in order.
template <typename F>
void for_each_pretoken(std::string_view s, F&& f) {
  const Pattern& p = pattern();
  Matcher& m = matcher();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  PCRE2_SIZE start = 0;
  while (start < s.size()) {
    const int rc =
        p.jit ? pcre2_jit_match(p.code, subject, s.size(), start, 0, m.md, m.mc)
              : pcre2_match(p.code, subject, s.size(), start, PCRE2_NO_UTF_CHECK, m.md, m.mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      fail("tokenizer", "pre-tokenizer failed at byte ", start, ": ",
           reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    if (ov[1] <= ov[0]) break;  // cannot happen: every alternative consumes a character
    f(s.substr(ov[0], ov[1] - ov[0]));
    start = ov[1];
  }
}

// Per-thread cache of the BPE results of pieces that are not single tokens.
struct PieceCache {
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return hash_bytes(s.data(), s.size()); }
  };
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> map;
};
constexpr size_t kCacheMaxPiece = 64;
constexpr size_t kCacheMaxEntries = 1 << 16;
constexpr size_t kScanMaxPiece = 128;  // longer pieces use the heap BPE

std::atomic<uint64_t> g_tokenizer_serial{1};

}  // namespace

// --- the tokenizer ----------------------------------------------------------------------------

struct Gpt2Tokenizer::Impl {
  std::string arena;          // all token bytes, rank order
  std::vector<uint32_t> off;  // [kRanks + 1] token r = arena[off[r], off[r+1])
  BytesToRank bytes;
  PairToRank pairs;
  int32_t byte_rank[256];
  uint64_t serial = g_tokenizer_serial.fetch_add(1);

  std::string_view token(int32_t r) const {
    return std::string_view(arena).substr(off[r], off[r + 1] - off[r]);
  }

  void bpe_scan(std::string_view piece, std::vector<int32_t>& out) const {
    const size_t n = piece.size();
    int32_t ids[kScanMaxPiece], ranks[kScanMaxPiece];
    for (size_t i = 0; i < n; ++i) ids[i] = byte_rank[static_cast<uint8_t>(piece[i])];
    size_t len = n;
    for (size_t i = 0; i + 1 < len; ++i) ranks[i] = pairs.find(ids[i], ids[i + 1]);
    while (len > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < len; ++i)
        if (ranks[i] < ranks[best]) best = i;
      if (ranks[best] == INT32_MAX) break;
      ids[best] = ranks[best];
      for (size_t i = best + 1; i + 1 < len; ++i) ids[i] = ids[i + 1];
      for (size_t i = best + 1; i + 2 < len; ++i) ranks[i] = ranks[i + 1];
      --len;
      if (best > 0) ranks[best - 1] = pairs.find(ids[best - 1], ids[best]);
      if (best + 1 < len) ranks[best] = pairs.find(ids[best], ids[best + 1]);
    }
    out.insert(out.end(), ids, ids + len);
  }

  void bpe_heap(std::string_view piece, std::vector<int32_t>& out) const {
    // Parts are nodes of a linked list indexed by their first byte; candidate merges wait in a
    // min-heap ordered by (rank, position), which is tiktoken's "lowest rank, leftmost" rule.
    // Stale entries are skipped when popped.
    const int32_t n = static_cast<int32_t>(piece.size());
    std::vector<int32_t> id(n), next(n), prev(n);
    for (int32_t i = 0; i < n; ++i) {
      id[i] = byte_rank[static_cast<uint8_t>(piece[i])];
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    using Entry = std::pair<int32_t, int32_t>;  // (merged rank, left node)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    for (int32_t i = 0; i + 1 < n; ++i) {
      const int32_t r = pairs.find(id[i], id[i + 1]);
      if (r != INT32_MAX) heap.emplace(r, i);
    }
    while (!heap.empty()) {
      const auto [r, i] = heap.top();
      heap.pop();
      if (id[i] < 0 || next[i] < 0 || pairs.find(id[i], id[next[i]]) != r) continue;
      const int32_t j = next[i];
      id[i] = r;
      id[j] = -1;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      if (prev[i] >= 0) {
        const int32_t q = pairs.find(id[prev[i]], r);
        if (q != INT32_MAX) heap.emplace(q, prev[i]);
      }
      if (next[i] >= 0) {
        const int32_t q = pairs.find(r, id[next[i]]);
        if (q != INT32_MAX) heap.emplace(q, i);
      }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_rank[static_cast<uint8_t>(piece[0])]);
      return;
    }
    const int32_t whole = bytes.find(piece, arena, off);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
    if (piece.size() > kCacheMaxPiece) {
      if (piece.size() <= kScanMaxPiece)
        bpe_scan(piece, out);
      else
        bpe_heap(piece, out);
      return;
    }
    thread_local PieceCache cache;
    if (cache.owner != serial) {
      cache.map.clear();
      cache.owner = serial;
    }
    auto it = cache.map.find(piece);
    if (it != cache.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    const size_t before = out.size();
    bpe_scan(piece, out);
    if (cache.map.size() >= kCacheMaxEntries) cache.map.clear();
    cache.map.emplace(std::string(piece),
                      std::vector<int32_t>(out.begin() + static_cast<long>(before), out.end()));
  }
};

Gpt2Tokenizer::Gpt2Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gpt2Tokenizer::Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer& Gpt2Tokenizer::operator=(Gpt2Tokenizer&&) noexcept = default;
Gpt2Tokenizer::~Gpt2Tokenizer() = default;

namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64 (with padding); false when malformed.
bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=') {
        if (i + 4 != in.size() || k < 2) return false;
        v[k] = 0;
        ++pad;
      } else {
        if (pad) return false;
        v[k] = base64_value(c);
        if (v[k] < 0) return false;
      }
    }
    const uint32_t w =
        (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
    out += char(w >> 16);
    if (pad < 2) out += char((w >> 8) & 0xFF);
    if (pad < 1) out += char(w & 0xFF);
  }
  return true;
}

}  // namespace

Gpt2Tokenizer Gpt2Tokenizer::parse(std::string_view text, const std::string& where) {
  auto m = std::make_unique<Impl>();
  std::vector<std::string> tokens(kRanks);
  std::vector<bool> seen(kRanks, false);
  int64_t count = 0, line_no = 0;
  std::string bytes;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos)
      fail(where, "line ", line_no, ": expected '<base64 bytes> <rank>': not a tiktoken rank file");
    if (!base64_decode(line.substr(0, sp), bytes))
      fail(where, "line ", line_no, ": malformed base64 '",
           line.substr(0, std::min<size_t>(sp, 40)), "'");
    const std::string_view num = line.substr(sp + 1);
    int64_t rank = 0;
    if (num.empty() || num.size() > 9) fail(where, "line ", line_no, ": bad rank '", num, "'");
    for (char c : num) {
      if (c < '0' || c > '9') fail(where, "line ", line_no, ": bad rank '", num, "'");
      rank = rank * 10 + (c - '0');
    }
    if (rank >= kRanks)
      fail(where, "line ", line_no, ": rank ", rank, " is out of range (GPT-2 has ranks 0..",
           kRanks - 1, ")");
    if (seen[rank]) fail(where, "line ", line_no, ": rank ", rank, " appears twice");
    seen[rank] = true;
    tokens[rank] = bytes;
    ++count;
  }
  if (count != kRanks)
    fail(where, "has ", count, " ranks; a GPT-2 rank file has ", kRanks, " (0..", kRanks - 1, ")");

  m->off.resize(kRanks + 1);
  size_t total = 0;
  for (int64_t r = 0; r < kRanks; ++r) total += tokens[r].size();
  m->arena.reserve(total);
  for (int64_t r = 0; r < kRanks; ++r) {
    m->off[r] = static_cast<uint32_t>(m->arena.size());
    m->arena += tokens[r];
  }
  m->off[kRanks] = static_cast<uint32_t>(m->arena.size());

  m->bytes.init(size_t(1) << 17);
  std::fill(std::begin(m->byte_rank), std::end(m->byte_rank), -1);
  for (int32_t r = 0; r < kRanks; ++r) {
    const int32_t dup = m->bytes.insert(m->token(r), r, m->arena, m->off);
    if (dup >= 0) fail(where, "ranks ", dup, " and ", r, " have the same bytes");
    if (m->token(r).size() == 1) m->byte_rank[static_cast<uint8_t>(m->token(r)[0])] = r;
  }
  for (int b = 0; b < 256; ++b)
    if (m->byte_rank[b] < 0) fail(where, "byte ", b, " has no rank: not a byte-level BPE file");

  // Every way to split a token into two tokens is a merge that produces it.
  m->pairs.init(size_t(1) << 19);
  for (int32_t r = 0; r < kRanks; ++r) {
    const std::string_view t = m->token(r);
    for (size_t i = 1; i < t.size(); ++i) {
      const int32_t a = m->bytes.find(t.substr(0, i), m->arena, m->off);
      if (a < 0) continue;
      const int32_t b = m->bytes.find(t.substr(i), m->arena, m->off);
      if (b >= 0) m->pairs.insert(a, b, r);
    }
  }
  return Gpt2Tokenizer(std::move(m));
}

Gpt2Tokenizer Gpt2Tokenizer::load(const std::string& path) {
  // gpt2.tiktoken is 836 kB; the bound keeps a wrong file from exhausting memory.
  constexpr int64_t kMaxRankFileBytes = int64_t(64) << 20;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec) && !ec)
    fail(path, "no such file (tools/fetch_vocab.sh fetches gpt2.tiktoken)");
  return parse(read_regular_file(path, kMaxRankFileBytes), path);
}

void Gpt2Tokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
  std::string fixed;
  if (!is_valid_utf8(text)) {
    fixed = sanitize_utf8(text);
    text = fixed;
  }
  const Impl& m = *impl_;
  for_each_pretoken(text, [&](std::string_view piece) { m.encode_piece(piece, out); });
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_append(text, out);
  return out;
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

std::string_view Gpt2Tokenizer::token_bytes(int32_t id) const {
  if (id == kEndOfText) return "<|endoftext|>";
  if (id < 0 || id >= kRanks)
    fail("tokenizer", "token id ", id, " is outside the vocabulary (0..", kEndOfText, ")");
  return impl_->token(id);
}

std::string Gpt2Tokenizer::token_display(int32_t id) const {
  if (id == kEndOfText) return "<|endoftext|>";
  std::string out;
  for (char c : token_bytes(id)) append_utf8(out, gpt2_byte_to_unicode()[static_cast<uint8_t>(c)]);
  return out;
}

std::vector<std::string_view> Gpt2Tokenizer::pretokenize(std::string_view valid_utf8) const {
  if (!is_valid_utf8(valid_utf8)) fail("tokenizer", "pretokenize() needs valid UTF-8");
  std::vector<std::string_view> out;
  for_each_pretoken(valid_utf8, [&](std::string_view p) { out.push_back(p); });
  return out;
}

void Gpt2Tokenizer::bpe_scan(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (piece.size() > kScanMaxPiece)
    fail("tokenizer", "bpe_scan takes pieces up to ", kScanMaxPiece, " bytes");
  impl_->bpe_scan(piece, out);
}

void Gpt2Tokenizer::bpe_heap(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  impl_->bpe_heap(piece, out);
}

}  // namespace muongpt
