// The GPT-2 tokenizer against tiktoken (fixtures from tools/reference/make_tokenizer_fixtures.py),
// the invalid-UTF-8 rule, round trips, and bad rank files.
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/rng.h"
#include "data/tokenizer.h"
#include "data_testing.h"

namespace muongpt {
namespace {

using testing::error_of;
using testing::shared_tokenizer;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

struct Case {
  std::string name, raw, sanitized;
  std::vector<int32_t> ids;
  bool valid;
};

const std::vector<Case>& fixture_cases() {
  static const std::vector<Case> cases = [] {
    const std::string path =
        std::string(MUONGPT_SOURCE_DIR) + "/tests/fixtures/gpt2_tokenizer_cases.json";
    const auto j = nlohmann::json::parse(testing::read_file(path));
    std::vector<Case> out;
    for (const auto& c : j.at("cases")) {
      Case k;
      k.name = c.at("name");
      k.valid = c.contains("text");
      k.raw = k.valid ? c.at("text").get<std::string>() : from_hex(c.at("hex"));
      k.sanitized = k.valid ? k.raw : from_hex(c.at("sanitized_hex"));
      k.ids = c.at("ids").get<std::vector<int32_t>>();
      out.push_back(std::move(k));
    }
    return out;
  }();
  return cases;
}

TEST(TokenizerFixtures, CorpusCoversTheRequiredKinds) {
  const auto& cases = fixture_cases();
  ASSERT_GE(cases.size(), 250u);
  std::set<std::string> names;
  int invalid = 0;
  for (const Case& c : cases) {
    names.insert(c.name);
    invalid += !c.valid;
  }
  for (const char* n :
       {"prose", "code_cpp", "code_python", "numbers", "contractions", "accented_latin", "cjk",
        "emoji", "spaces_1000_then_word", "newlines_500", "surrogate", "truncated_end"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_GE(invalid, 30);
}

TEST(TokenizerFixtures, InvalidUtf8IsReplacedAsPythonDoes) {
  for (const Case& c : fixture_cases()) {
    EXPECT_EQ(is_valid_utf8(c.raw), c.valid) << c.name;
    EXPECT_EQ(sanitize_utf8(c.raw), c.sanitized) << c.name;
    EXPECT_TRUE(is_valid_utf8(c.sanitized)) << c.name;
  }
}

TEST(TokenizerFixtures, MatchesTiktokenTokenForToken) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  int64_t ids = 0;
  for (const Case& c : fixture_cases()) {
    const std::vector<int32_t> got = tok.encode(c.raw);
    if (got != c.ids) {
      size_t i = 0;
      while (i < got.size() && i < c.ids.size() && got[i] == c.ids[i]) ++i;
      ADD_FAILURE() << c.name << ": first difference at token " << i << " of " << c.ids.size()
                    << " (ours " << (i < got.size() ? got[i] : -1) << ", tiktoken "
                    << (i < c.ids.size() ? c.ids[i] : -1) << ")";
    }
    ids += static_cast<int64_t>(c.ids.size());
  }
  EXPECT_GT(ids, 40000);
}

TEST(TokenizerFixtures, DecodeGivesTheTextBackAndReencodes) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  for (const Case& c : fixture_cases()) {
    const std::string text = tok.decode(c.ids);
    EXPECT_EQ(text, c.sanitized) << c.name;
    EXPECT_EQ(tok.encode(text), c.ids) << c.name;  // decode then encode is the identity
  }
}

TEST(Tokenizer, KnownIds) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(tok.encode(" the"), (std::vector<int32_t>{262}));
  EXPECT_EQ(tok.encode("!"), (std::vector<int32_t>{0}));
  EXPECT_EQ(tok.encode(""), std::vector<int32_t>{});
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.eot(), 50256);
}

TEST(Tokenizer, EndOfTextInTextIsNotSpecial) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  const auto ids = tok.encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 50256), 0);
  EXPECT_EQ(tok.decode(ids), "a<|endoftext|>b");
  const std::vector<int32_t> eot = {50256};
  EXPECT_EQ(tok.decode(eot), "<|endoftext|>");
  const std::vector<int32_t> bad = {50257};
  EXPECT_EQ(error_of([&] { tok.decode(bad); }),
            "tokenizer: token id 50257 is outside the vocabulary (0..50256)");
}

TEST(Tokenizer, PretokenizationFollowsTheGpt2Pattern) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  using V = std::vector<std::string_view>;
  EXPECT_EQ(tok.pretokenize("Hello  world's\n\n"), (V{"Hello", " ", " world", "'s", "\n\n"}));
  EXPECT_EQ(tok.pretokenize("I'm 42x  ?!"), (V{"I", "'m", " 42", "x", " ", " ?!"}));
  // U+0085 and U+3000 are White_Space (the last one of a run joins the next piece only when it
  // is a plain space); U+200B is not.
  EXPECT_EQ(tok.pretokenize("a\u3000\u0085b"), (V{"a", "\u3000", "\u0085", "b"}));
  EXPECT_EQ(tok.pretokenize("a\u200bb"), (V{"a", "\u200b", "b"}));
  EXPECT_EQ(error_of([&] { tok.pretokenize("\xff"); }),
            "tokenizer: pretokenize() needs valid UTF-8");
}

TEST(Tokenizer, ByteToUnicodeIsGpt2sTable) {
  const auto& t = gpt2_byte_to_unicode();
  std::set<char32_t> seen(t.begin(), t.end());
  EXPECT_EQ(seen.size(), 256u);  // a bijection onto 256 code points
  EXPECT_EQ(t['!'], U'!');
  EXPECT_EQ(t['~'], U'~');
  EXPECT_EQ(t[0xE9], U'\u00E9');
  EXPECT_EQ(t[0], U'\u0100');
  EXPECT_EQ(t[' '], U'\u0120');   // 'Ġ'
  EXPECT_EQ(t['\n'], U'\u010A');  // 'Ċ'
  EXPECT_EQ(t[0x7F], U'\u0121');
  EXPECT_EQ(t[0xAD], U'\u0143');  // the last of the 68 remapped bytes
  if (!shared_tokenizer()) return;
  EXPECT_EQ(shared_tokenizer()->token_display(262), "\u0120the");
  EXPECT_EQ(shared_tokenizer()->token_display(198), "\u010A");
}

TEST(Tokenizer, HeapAndScanBpeAgree) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  Rng rng(11);
  const std::string alphabet = "aaaeeiioouulnrstthh  ..,,''ss00112389";
  for (int i = 0; i < 3000; ++i) {
    std::string piece;
    const int n = 2 + static_cast<int>(rng.below(120));
    const bool bytes = i % 3 == 0;
    for (int k = 0; k < n; ++k)
      piece += bytes ? static_cast<char>(rng.below(256)) : alphabet[rng.below(alphabet.size())];
    std::vector<int32_t> a, b;
    tok.bpe_scan(piece, a);
    tok.bpe_heap(piece, b);
    ASSERT_EQ(a, b) << "piece " << i;
    ASSERT_EQ(tok.decode(a), piece);
  }
}

TEST(Tokenizer, LongInputsRoundTrip) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  for (const std::string& s : {std::string(1 << 20, ' '), std::string(300000, 'a'),
                               std::string(100000, '\n') + "x", std::string(200000, '\xff')}) {
    const auto ids = tok.encode(s);
    EXPECT_EQ(tok.decode(ids), sanitize_utf8(s));
    EXPECT_GT(ids.size(), 0u);
  }
  // Long pieces go through the heap BPE: a run of 'a' merges into "aaaa" (24794) tokens, as
  // tiktoken does (3000 'a' -> 750 x 24794).
  EXPECT_EQ(tok.encode(std::string(300000, 'a')), std::vector<int32_t>(75000, 24794));
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  std::vector<const Case*> cases;
  for (const Case& c : fixture_cases()) cases.push_back(&c);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = t; i < cases.size() + t; ++i) {
          const Case& c = *cases[i % cases.size()];
          mismatches[t] += tok.encode(c.raw) != c.ids;
        }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// A valid rank file's contents: the 256 single bytes at their own ranks, then distinct 3-byte
// strings, with `overrides` (rank -> bytes) put in place.
std::string synthetic_rank_file(const std::map<int32_t, std::string>& overrides = {},
                                int32_t dup_rank = -1, int32_t drop_byte = -1) {
  auto b64 = [](const std::string& s) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < s.size(); i += 3) {
      uint32_t w = uint32_t(uint8_t(s[i])) << 16;
      if (i + 1 < s.size()) w |= uint32_t(uint8_t(s[i + 1])) << 8;
      if (i + 2 < s.size()) w |= uint8_t(s[i + 2]);
      out += k[(w >> 18) & 63];
      out += k[(w >> 12) & 63];
      out += i + 1 < s.size() ? k[(w >> 6) & 63] : '=';
      out += i + 2 < s.size() ? k[w & 63] : '=';
    }
    return out;
  };
  std::string text;
  for (int32_t r = 0; r < 50256; ++r) {
    std::string bytes;
    if (overrides.count(r)) {
      bytes = overrides.at(r);
    } else if (r < 256 && r != drop_byte) {
      bytes = std::string(1, static_cast<char>(r));
    } else {
      const int32_t v = r == dup_rank ? 1000 : r;
      bytes = {static_cast<char>('a' + v % 26), static_cast<char>(v / 26 % 256),
               static_cast<char>(v / 26 / 256 + 1)};
    }
    text += b64(bytes) + " " + std::to_string(r) + "\n";
  }
  return text;
}

TEST(Tokenizer, BadRankFilesGiveClearErrors) {
  auto err = [](const std::string& text) {
    return error_of([&] { Gpt2Tokenizer::parse(text, "v.tiktoken"); });
  };
  EXPECT_EQ(err(synthetic_rank_file()), "");
  EXPECT_EQ(err("IQ== 0\nIg== 1\n"),
            "v.tiktoken: has 2 ranks; a GPT-2 rank file has 50256 (0..50255)");
  EXPECT_EQ(err("IQ==0\n"),
            "v.tiktoken: line 1: expected '<base64 bytes> <rank>': not a tiktoken rank file");
  EXPECT_EQ(err("IQ== 0\nI*== 1\n"), "v.tiktoken: line 2: malformed base64 'I*=='");
  EXPECT_EQ(err("IQ== 0\nIg== x1\n"), "v.tiktoken: line 2: bad rank 'x1'");
  EXPECT_EQ(err("IQ== 0\nIg== 50256\n"),
            "v.tiktoken: line 2: rank 50256 is out of range (GPT-2 has ranks 0..50255)");
  EXPECT_EQ(err("IQ== 0\nIg== 0\n"), "v.tiktoken: line 2: rank 0 appears twice");
  EXPECT_EQ(err(synthetic_rank_file({}, 2000)),
            "v.tiktoken: ranks 1000 and 2000 have the same bytes");
  EXPECT_EQ(err(synthetic_rank_file({}, -1, 65)),
            "v.tiktoken: byte 65 has no rank: not a byte-level BPE file");
  EXPECT_EQ(err("{\"not\": \"a rank file\"}\n"),
            "v.tiktoken: line 1: expected '<base64 bytes> <rank>': not a tiktoken rank file");
  EXPECT_EQ(
      error_of([] { Gpt2Tokenizer::load("/nonexistent/gpt2.tiktoken"); }),
      "/nonexistent/gpt2.tiktoken: no such file (tools/fetch_vocab.sh fetches gpt2.tiktoken)");
}

// BPE semantics on rank files made for the purpose: the lowest-ranked pair merges first, and of
// equal pairs the leftmost; both algorithms agree.
TEST(Tokenizer, MergesFollowRankOrder) {
  auto ids = [](const Gpt2Tokenizer& tok, const std::string& piece) {
    std::vector<int32_t> scan, heap;
    tok.bpe_scan(piece, scan);
    tok.bpe_heap(piece, heap);
    EXPECT_EQ(scan, heap) << piece;
    EXPECT_EQ(tok.encode(piece), scan) << piece;
    return scan;
  };
  using V = std::vector<int32_t>;
  // "bc" before "ab": abcd -> a bc d ("abc" and "bcd" are not tokens).
  const Gpt2Tokenizer bc_first =
      Gpt2Tokenizer::parse(synthetic_rank_file({{256, "bc"}, {257, "ab"}, {258, "cd"}}), "t1");
  EXPECT_EQ(ids(bc_first, "abcd"), (V{'a', 256, 'd'}));
  // "ab" before "bc": abcd -> ab cd.
  const Gpt2Tokenizer ab_first =
      Gpt2Tokenizer::parse(synthetic_rank_file({{256, "ab"}, {257, "bc"}, {258, "cd"}}), "t2");
  EXPECT_EQ(ids(ab_first, "abcd"), (V{256, 258}));
  // Equal pairs: the leftmost merges first, then "aa" + "aa" -> "aaaa" when that is a token.
  const Gpt2Tokenizer aa =
      Gpt2Tokenizer::parse(synthetic_rank_file({{256, "aa"}, {257, "aaaa"}}), "t3");
  EXPECT_EQ(ids(aa, "aaa"), (V{256, 'a'}));
  EXPECT_EQ(ids(aa, "aaaaa"), (V{257, 'a'}));
  EXPECT_EQ(ids(aa, "aaaaaaa"), (V{257, 256, 'a'}));
  // A piece that is a token is that token, even when merges could not build it.
  const Gpt2Tokenizer whole = Gpt2Tokenizer::parse(synthetic_rank_file({{256, "xyz"}}), "t4");
  EXPECT_EQ(whole.encode("xyz"), (V{256}));
  EXPECT_EQ(ids(whole, "xyzw"), (V{'x', 'y', 'z', 'w'}));
}

}  // namespace
}  // namespace muongpt
