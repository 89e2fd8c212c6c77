// The shard format: byte layout, round trip, and one clear error for each kind of corruption.
#include <cstring>

#include "core/rng.h"
#include "data/shard.h"
#include "data_testing.h"

namespace muongpt {
namespace {

using testing::error_of;
namespace fs = std::filesystem;
using testing::read_file;

class ShardTest : public testing::TempDirTest {};

std::string header_bytes(int32_t magic, int32_t version, int32_t count) {
  std::string h(kShardHeaderBytes, '\0');
  std::memcpy(h.data(), &magic, 4);
  std::memcpy(h.data() + 4, &version, 4);
  std::memcpy(h.data() + 8, &count, 4);
  return h;
}

TEST_F(ShardTest, WriteThenReadIsIdentical) {
  Rng rng(7);
  std::vector<uint16_t> t(100003);
  for (auto& x : t) x = static_cast<uint16_t>(rng.below(50257));
  t[0] = kEot;
  t[1] = 0;
  t[2] = 65535;  // the format holds any uint16; the vocabulary check is separate
  const std::string p = write_tokens("a.bin", t);
  EXPECT_FALSE(fs::exists(p + ".tmp"));

  Shard s(p);
  EXPECT_EQ(s.path(), p);
  ASSERT_EQ(s.size(), static_cast<int64_t>(t.size()));
  std::vector<uint16_t> back(t.size());
  s.read(0, s.size(), back.data());
  EXPECT_EQ(back, t);
  EXPECT_EQ(s.token(2), 65535);
  s.read(100000, 3, back.data());  // a run at an offset
  EXPECT_EQ(std::vector<uint16_t>(back.begin(), back.begin() + 3),
            std::vector<uint16_t>(t.end() - 3, t.end()));
}

TEST_F(ShardTest, ByteLayoutIsTheFineWebFormat) {
  const std::vector<uint16_t> t = {kEot, 464, 2068, 13};
  const std::string bytes = read_file(write_tokens("layout.bin", t));
  ASSERT_EQ(bytes.size(), 1024u + 8u);
  // Little-endian int32 header words: 20240520 = 0x0134D888, version 1, count 4, then zeros.
  const unsigned char expect_head[12] = {0x88, 0xD8, 0x34, 0x01, 1, 0, 0, 0, 4, 0, 0, 0};
  EXPECT_EQ(std::memcmp(bytes.data(), expect_head, 12), 0);
  for (size_t i = 12; i < 1024; ++i) ASSERT_EQ(bytes[i], 0) << "header byte " << i;
  // Tokens as little-endian uint16: 50256 = 0xC450.
  const unsigned char expect_tokens[8] = {0x50, 0xC4, 0xD0, 0x01, 0x14, 0x08, 0x0D, 0x00};
  EXPECT_EQ(std::memcmp(bytes.data() + 1024, expect_tokens, 8), 0);
}

TEST_F(ShardTest, EmptyShardIsValid) {
  const std::string p = write_tokens("empty.bin", {});
  Shard s(p);
  EXPECT_EQ(s.size(), 0);
  EXPECT_EQ(fs::file_size(p), 1024u);
}

TEST_F(ShardTest, MoveKeepsTheOpenFile) {
  const std::string p = write_tokens("m.bin", {1, 2, 3});
  Shard a(p);
  Shard b(std::move(a));
  EXPECT_EQ(a.size(), 0);  // NOLINT(bugprone-use-after-move): moved-from is empty
  ASSERT_EQ(b.size(), 3);
  EXPECT_EQ(b.token(2), 3);
  Shard c(write_tokens("n.bin", {9}));
  c = std::move(b);
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c.token(0), 1);
}

TEST_F(ShardTest, EachCorruptionGivesOneClearError) {
  const std::string good = header_bytes(kShardMagic, 1, 3) + std::string(6, '\x01');
  struct Case {
    std::string name, bytes, expect;
  };
  const std::vector<Case> cases = {
      {"zero.bin", "", "short header: the file has 0 bytes, a shard header needs 1024"},
      {"short.bin", good.substr(0, 100),
       "short header: the file has 100 bytes, a shard header needs 1024"},
      {"magic.bin", header_bytes(20240521, 1, 3) + std::string(6, '\0'),
       "wrong magic number 20240521 (expected 20240520): not a token shard"},
      {"text.bin", std::string(2000, 'x'),
       "wrong magic number 2021161080 (expected 20240520): not a token shard"},
      {"version.bin", header_bytes(kShardMagic, 2, 3) + std::string(6, '\0'),
       "unsupported shard version 2 (this reader knows version 1: uint16 GPT-2 tokens)"},
      {"negative.bin", header_bytes(kShardMagic, 1, -5), "negative token count -5 in the header"},
      {"truncated.bin", good.substr(0, good.size() - 1),
       "size does not match the header: 3 tokens need 1030 bytes, the file has 1029 (truncated)"},
      {"extra.bin", good + "zz",
       "size does not match the header: 3 tokens need 1030 bytes, the file has 1032 (extra bytes)"},
      {"big_count.bin", header_bytes(kShardMagic, 1, 2147483647),
       "size does not match the header: 2147483647 tokens need 4294968318 bytes, the file has "
       "1024 (truncated)"},
  };
  for (const Case& c : cases) {
    const std::string p = write_bytes(c.name, c.bytes);
    const std::string e = error_of([&] { Shard s(p); });
    EXPECT_EQ(e, p + ": " + c.expect) << c.name;
    EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  }
  EXPECT_EQ(error_of([&] { Shard s(path("missing.bin")); }),
            path("missing.bin") + ": no such file");
  fs::create_directories(path("dir.bin"));
  EXPECT_EQ(error_of([&] { Shard s(path("dir.bin")); }),
            path("dir.bin") + ": not a regular file (a directory)");
  // The good bytes themselves are fine.
  EXPECT_EQ(Shard(write_bytes("good.bin", good)).size(), 3);
}

TEST_F(ShardTest, HeaderCheckIsPure) {
  const std::string h = header_bytes(kShardMagic, 1, 10);
  const auto* b = reinterpret_cast<const uint8_t*>(h.data());
  EXPECT_EQ(check_shard_header("x", b, 1044), 10);
  EXPECT_EQ(error_of([&] { check_shard_header("x", b, 1043); }),
            "x: size does not match the header: 10 tokens need 1044 bytes, the file has 1043 "
            "(truncated)");
}

TEST_F(ShardTest, TokenIdsAreCheckedOnRequest) {
  std::vector<uint16_t> t(10, 5);
  t[6] = 50257;
  t[8] = 60000;
  const std::string p = write_tokens("oov.bin", t);
  Shard s(p);  // opening does not scan the tokens
  EXPECT_EQ(error_of([&] { s.check_tokens(); }),
            p + ": token id 50257 at position 6 is outside the vocabulary (ids < 50257)");
  EXPECT_EQ(error_of([&] { s.check_tokens(60001); }), "");
  const ShardStats st = shard_stats(s);
  EXPECT_EQ(st.out_of_vocab, 2);
  EXPECT_EQ(st.first_out_of_vocab, 6);
  EXPECT_EQ(st.first_out_of_vocab_id, 50257);
}

// Whole-shard scans read in chunks of 2^21 tokens: positions past the first chunk are right.
TEST_F(ShardTest, ScansPastTheFirstReadChunk) {
  const int64_t n = (int64_t(1) << 21) + 5;
  std::vector<uint16_t> t(static_cast<size_t>(n), 7);
  t[static_cast<size_t>(n - 3)] = 60001;
  t[static_cast<size_t>(n - 1)] = kEot;
  const std::string p = write_tokens("big.bin", t);
  Shard s(p);
  EXPECT_EQ(error_of([&] { s.check_tokens(); }),
            p + ": token id 60001 at position 2097154 is outside the vocabulary (ids < 50257)");
  const ShardStats st = shard_stats(s);
  EXPECT_EQ(st.first_out_of_vocab, n - 3);
  EXPECT_EQ(st.first_out_of_vocab_id, 60001);
  EXPECT_EQ(st.documents, 1);
  EXPECT_EQ(st.top[0], std::make_pair(int32_t(7), n - 2));
}

TEST_F(ShardTest, StatsCountDocumentsAndTopTokens) {
  // Three documents: EOT a a a b | EOT a c | EOT
  const std::vector<uint16_t> t = {kEot, 7, 7, 7, 9, kEot, 7, 11, kEot};
  Shard s(write_tokens("stats.bin", t));
  const ShardStats st = shard_stats(s, kGpt2Vocab, 2);
  EXPECT_EQ(st.tokens, 9);
  EXPECT_EQ(st.documents, 3);
  ASSERT_EQ(st.top.size(), 2u);
  EXPECT_EQ(st.top[0], std::make_pair(int32_t(7), int64_t(4)));
  EXPECT_EQ(st.top[1], std::make_pair(int32_t(kEot), int64_t(3)));
  EXPECT_DOUBLE_EQ(st.p_max, 4.0 / 9.0);
  EXPECT_EQ(st.out_of_vocab, 0);
}

TEST_F(ShardTest, GlobIsSortedAndNamesThePatternWhenEmpty) {
  for (const char* n :
       {"x_train_000010.bin", "x_train_000002.bin", "x_train_000001.bin", "x_val_000000.bin"})
    write_tokens(n, {1});
  const auto files = expand_glob(path("x_train_*.bin"));
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0], path("x_train_000001.bin"));
  EXPECT_EQ(files[1], path("x_train_000002.bin"));
  EXPECT_EQ(files[2], path("x_train_000010.bin"));
  EXPECT_EQ(expand_glob(path("x_val_000000.bin")),
            std::vector<std::string>{path("x_val_000000.bin")});
  EXPECT_EQ(error_of([&] { expand_glob(path("y_*.bin")); }),
            path("y_*.bin") + ": matches no files");
  EXPECT_EQ(error_of([&] { expand_glob(path("nope.bin")); }), path("nope.bin") + ": no such file");
}

TEST_F(ShardTest, WriterRejectsCountsOutsideTheFormat) {
  const uint16_t one = 1;
  EXPECT_NE(
      error_of([&] { write_shard(path("neg.bin"), &one, -1); }).find("cannot write -1 tokens"),
      std::string::npos);
  EXPECT_NE(error_of([&] { write_shard(path("no_dir/x.bin"), &one, 1); }).find("cannot create"),
            std::string::npos);
}

}  // namespace
}  // namespace muongpt
