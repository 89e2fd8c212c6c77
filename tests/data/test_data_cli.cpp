// `muongpt shard-info` and `muongpt tokenize` as a user runs them.
#include <cstring>
#include <nlohmann/json.hpp>

#include "data/shard.h"
#include "data_testing.h"

namespace muongpt {
namespace {

using testing::CliResult;
namespace fs = std::filesystem;
using testing::count_lines;
using testing::run_cli;
using testing::shared_tokenizer;

class DataCli : public testing::TempDirTest {
 protected:
  std::string bad_shard(const std::string& name, int32_t magic, int32_t version, int32_t count,
                        size_t payload) const {
    std::string h(1024, '\0');
    std::memcpy(h.data(), &magic, 4);
    std::memcpy(h.data() + 4, &version, 4);
    std::memcpy(h.data() + 8, &count, 4);
    return write_bytes(name, h + std::string(payload, '\0'));
  }
};

TEST_F(DataCli, ShardInfoPrintsStatisticsOfValidShards) {
  const std::string a = write_tokens("a.bin", {kEot, 10, 10, 10, 11, kEot, 10, 12});
  const std::string b = write_tokens("b.bin", {kEot, 5});
  CliResult r = run_cli("shard-info " + a + " " + b);
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find(a + "\n  tokens     8 (1.0 kB)\n  documents  2 (EOT count), 4.0 tokens per "
                           "document\n  p_max      0.5000 (token 10;"),
            std::string::npos)
      << r.out;
  EXPECT_NE(
      r.out.find("  top-10     10 50.00%, 50256 25.00%, 11 12.50%, 12 12.50%\n  valid      yes"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("2 of 2 files valid: 10 tokens, 3 documents"), std::string::npos) << r.out;
  r = run_cli("shard-info --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--vocab-size"), std::string::npos);
}

TEST_F(DataCli, ShardInfoSpellsTokensWithAVocabulary) {
  MG_REQUIRE_VOCAB();
  const std::string a = write_tokens("a.bin", {kEot, 262, 262, 198});
  const CliResult r = run_cli("shard-info --vocab " + testing::vocab_path() + " " + a);
  EXPECT_EQ(r.status, 0) << r.err;
  // Ties are listed by id.
  EXPECT_NE(
      r.out.find("262 \"\u0120the\" 50.00%, 198 \"\u010A\" 25.00%, 50256 \"<|endoftext|>\" 25.00%"),
      std::string::npos)
      << r.out;
}

// Each kind of corrupt shard: exit 1, nothing on stdout, one line on stderr naming the file.
TEST_F(DataCli, ShardInfoGivesOneErrorLinePerCorruptShard) {
  struct Case {
    std::string file, what;
  };
  const std::vector<Case> cases = {
      {path("missing.bin"), "no such file"},
      {write_bytes("short.bin", "abc"),
       "short header: the file has 3 bytes, a shard header needs 1024"},
      {bad_shard("magic.bin", 1234, 1, 0, 0),
       "wrong magic number 1234 (expected 20240520): not a token shard"},
      {bad_shard("version.bin", kShardMagic, 2, 0, 0),
       "unsupported shard version 2 (this reader knows version 1: uint16 GPT-2 tokens)"},
      {bad_shard("truncated.bin", kShardMagic, 1, 10, 19),
       "size does not match the header: 10 tokens need 1044 bytes, the file has 1043 (truncated)"},
      {bad_shard("long.bin", kShardMagic, 1, 10, 21),
       "size does not match the header: 10 tokens need 1044 bytes, the file has 1045 (extra "
       "bytes)"},
      {write_tokens("oov.bin", {kEot, 1, 50257, 2, 65535}),
       "token id 50257 at position 2 is outside the vocabulary (ids < 50257); 2 such tokens in "
       "all"},
  };
  for (const Case& c : cases) {
    const CliResult r = run_cli("shard-info " + c.file);
    EXPECT_EQ(r.status, 1) << c.file;
    EXPECT_EQ(r.out, "") << c.file;
    EXPECT_EQ(r.err, "muongpt: error: " + c.file + ": " + c.what + "\n");
  }
  // A valid and an invalid file: the valid one is reported, the exit status is 1.
  const std::string good = write_tokens("good.bin", {kEot, 3});
  const CliResult r = run_cli("shard-info " + good + " " + cases[2].file);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find(good + "\n"), std::string::npos);
  EXPECT_NE(r.out.find("1 of 2 files valid"), std::string::npos);
  EXPECT_EQ(count_lines(r.err), 1);
  // A larger vocabulary makes the out-of-range ids valid.
  EXPECT_EQ(run_cli("shard-info --vocab-size 65536 " + cases.back().file).status, 0);
  EXPECT_EQ(run_cli("shard-info").err,
            "muongpt: error: shard-info: no shard files given (see --help)\n");
}

class TokenizeCli : public DataCli {
 protected:
  // The shards' tokens, concatenated in file-name order (val first: "val" < ... no: sorted by
  // split explicitly).
  std::vector<uint16_t> read_all(const std::string& dir, const std::string& prefix) const {
    std::vector<uint16_t> out;
    std::vector<std::string> files;
    if (fs::exists(dir + "/" + prefix + "_val_000000.bin"))
      files.push_back(dir + "/" + prefix + "_val_000000.bin");
    for (const std::string& f : expand_glob(dir + "/" + prefix + "_train_*.bin"))
      files.push_back(f);
    for (const std::string& f : files) {
      Shard s(f);
      out.resize(out.size() + static_cast<size_t>(s.size()));
      s.read(0, s.size(), out.data() + out.size() - s.size());
    }
    return out;
  }
};

TEST_F(TokenizeCli, WritesValThenTrainShardsOfEotPrefixedDocuments) {
  MG_REQUIRE_VOCAB();
  const Gpt2Tokenizer& tok = *shared_tokenizer();
  const std::vector<std::string> docs = {
      "The first document is a plain text file.\nIt has two lines.\n",
      "Line one of the jsonl file, with \"quotes\" and a tab\there.",
      "Zweites Dokument: grüße, 日本語, emoji 🚀.",
      "",  // an empty document still gets its EOT
      "Last words.",
  };
  write_bytes("one.txt", docs[0]);
  std::string jsonl;
  for (size_t i = 1; i < docs.size(); ++i)
    jsonl += nlohmann::json{{"text", docs[i]}}.dump() + "\n\n";
  write_bytes("many.jsonl", jsonl);

  std::vector<uint16_t> expect;
  for (const std::string& d : docs) {
    expect.push_back(kEot);
    for (int32_t id : tok.encode(d)) expect.push_back(static_cast<uint16_t>(id));
  }
  ASSERT_GT(expect.size(), 40u);

  const std::string base = "tokenize --vocab " + testing::vocab_path() + " --prefix tiny " +
                           "--val-tokens 7 --shard-tokens 10 " + path("one.txt") + " " +
                           path("many.jsonl") + " --output-dir ";
  const CliResult r1 = run_cli(base + path("out1") + " --threads 1");
  ASSERT_EQ(r1.status, 0) << r1.err;
  EXPECT_NE(r1.out.find("tokenized 5 documents"), std::string::npos) << r1.out;
  EXPECT_NE(r1.out.find("MB/s"), std::string::npos) << r1.out;
  EXPECT_NE(r1.out.find("wrote 1 val shard (7 tokens) and"), std::string::npos) << r1.out;
  EXPECT_EQ(read_all(path("out1"), "tiny"), expect);
  EXPECT_EQ(Shard(path("out1/tiny_val_000000.bin")).size(), 7);
  const auto train = expand_glob(path("out1/tiny_train_*.bin"));
  ASSERT_EQ(train.size(), (expect.size() - 7 + 9) / 10);
  for (size_t i = 0; i + 1 < train.size(); ++i) EXPECT_EQ(Shard(train[i]).size(), 10) << train[i];
  EXPECT_EQ(train[0], path("out1/tiny_train_000001.bin"));

  // The output does not depend on the number of threads.
  const CliResult r3 = run_cli(base + path("out3") + " --threads 3");
  ASSERT_EQ(r3.status, 0) << r3.err;
  EXPECT_EQ(read_all(path("out3"), "tiny"), expect);
  for (const auto& f : fs::directory_iterator(path("out1")))
    EXPECT_EQ(testing::read_file(f.path().string()),
              testing::read_file(path("out3/") + f.path().filename().string()));

  // The shards pass shard-info.
  EXPECT_EQ(run_cli("shard-info " + path("out1") + "/tiny_*.bin").status, 0);

  // Existing shards are not overwritten without --force.
  const CliResult again = run_cli(base + path("out1"));
  EXPECT_EQ(again.status, 1);
  EXPECT_EQ(again.err, "muongpt: error: " + path("out1") + ": already holds " +
                           std::to_string(train.size() + 1) +
                           " shard(s) named tiny_{val,train}_*.bin; pass --force to replace them "
                           "or choose another --prefix\n");
  EXPECT_EQ(run_cli(base + path("out1") + " --force").status, 0);
  EXPECT_EQ(read_all(path("out1"), "tiny"), expect);
}

TEST_F(TokenizeCli, BadInputGivesOneErrorLine) {
  MG_REQUIRE_VOCAB();
  const std::string vocab = " --vocab " + testing::vocab_path();
  write_bytes("ok.jsonl", "{\"text\": \"fine\"}\n");
  write_bytes("bad.jsonl", "{\"text\": \"fine\"}\n\n{\"text\": \"broken\n");
  write_bytes("notext.jsonl", "{\"text\": \"fine\"}\n{\"body\": \"x\"}\n");
  write_bytes("doc.md", "# title\n");
  write_bytes("bad.tiktoken", "not a rank file\n");
  const std::string out = " --output-dir " + path("out");
  struct Case {
    std::string args, line;
  };
  const std::vector<Case> cases = {
      {"tokenize" + vocab + out + " " + path("bad.jsonl"),
       path("bad.jsonl") + ":3: not valid JSON: "},
      {"tokenize" + vocab + out + " " + path("notext.jsonl"),
       path("notext.jsonl") + ":2: expected a JSON object with a string field \"text\""},
      {"tokenize" + vocab + out + " " + path("doc.md"), path("doc.md") + ": unsupported input"},
      {"tokenize" + vocab + out + " " + path("missing.txt"),
       path("missing.txt") + ": no such file"},
      {"tokenize" + out + " " + path("ok.jsonl"), "tokenize: --vocab FILE is required"},
      {"tokenize --vocab " + path("bad.tiktoken") + out + " " + path("ok.jsonl"),
       path("bad.tiktoken") + ": line 1: expected '<base64 bytes> <rank>'"},
      {"tokenize" + vocab + out + " --val-tokens 100 " + path("ok.jsonl"),
       "tokenize: the inputs hold 2 tokens, not more than --val-tokens 100"},
      {"tokenize" + vocab + out + " --shard-tokens 0 " + path("ok.jsonl"),
       "tokenize: --shard-tokens 0 must be in [1, 2147483647]"},
  };
  for (const Case& c : cases) {
    const CliResult r = run_cli(c.args);
    EXPECT_EQ(r.status, 1) << c.args;
    EXPECT_EQ(count_lines(r.err), 1) << r.err;
    EXPECT_EQ(r.err.rfind("muongpt: error: " + c.line, 0), 0u) << r.err;
  }
}

}  // namespace
}  // namespace muongpt
