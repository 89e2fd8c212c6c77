// `muongpt shard-info FILE...`: what each token shard holds, and whether it is valid.
#include <cstdio>
#include <cstdlib>
#include <cxxopts.hpp>
#include <iostream>
#include <optional>

#include "core/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "tools/commands.h"
#include "tools/format.h"

namespace muongpt {

namespace {

// The token's printable spelling, quoted, or empty without a vocabulary.
std::string spelled(const std::optional<Gpt2Tokenizer>& tok, int32_t id) {
  if (!tok || id < 0 || id >= tok->vocab_size()) return "";
  std::string s = " \"";
  for (char c : tok->token_display(id)) {
    if (c == '"' || c == '\\') s += '\\';
    s += c;
  }
  return s + "\"";
}

}  // namespace

int cmd_shard_info(int argc, char** argv) {
  cxxopts::Options opts("muongpt shard-info",
                        "Print, for each token shard: tokens, documents (EOT count), the top-10 "
                        "tokens, p_max (the top token's frequency) and validity. Every token is "
                        "checked against the vocabulary. Exit 0 only when all files are valid.");
  opts.positional_help("FILE...");
  opts.add_options()("vocab", "gpt2.tiktoken, to spell the top tokens (default: $MUONGPT_VOCAB)",
                     cxxopts::value<std::string>())(
      "vocab-size", "token ids must be below this",
      cxxopts::value<int64_t>()->default_value("50257"))("h,help", "show this help")(
      "files", "shard files", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"files"});
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("files")) fail("shard-info", "no shard files given (see --help)");
  const int64_t vocab_size = args["vocab-size"].as<int64_t>();
  if (vocab_size < 1 || vocab_size > 65536)
    fail("shard-info", "--vocab-size ", vocab_size, " must be in [1, 65536]");

  std::optional<Gpt2Tokenizer> tok;
  std::string vocab_path;
  if (args.count("vocab"))
    vocab_path = args["vocab"].as<std::string>();
  else if (const char* e = std::getenv("MUONGPT_VOCAB"); e && *e)
    vocab_path = e;
  if (!vocab_path.empty()) tok = Gpt2Tokenizer::load(vocab_path);

  std::vector<std::string> files;
  for (const std::string& f : args["files"].as<std::vector<std::string>>()) {
    if (f.find_first_of("*?[") != std::string::npos) {
      try {
        for (std::string& g : expand_glob(f)) files.push_back(std::move(g));
      } catch (const Error&) {
        files.push_back(f);  // reported below as "no such file"
      }
    } else {
      files.push_back(f);
    }
  }

  int64_t valid = 0, tokens = 0, documents = 0;
  for (const std::string& f : files) {
    try {
      Shard shard(f);
      const ShardStats s = shard_stats(shard, vocab_size, 10);
      if (s.out_of_vocab > 0)
        fail(f, "token id ", s.first_out_of_vocab_id, " at position ", s.first_out_of_vocab,
             " is outside the vocabulary (ids < ", vocab_size, "); ", s.out_of_vocab,
             s.out_of_vocab == 1 ? " such token" : " such tokens", " in all");
      std::printf("%s\n", f.c_str());
      std::printf("  tokens     %s (%s)\n", with_commas(s.tokens).c_str(),
                  human_bytes(double(kShardHeaderBytes + 2 * s.tokens)).c_str());
      std::printf("  documents  %s (EOT count)", with_commas(s.documents).c_str());
      if (s.documents > 0)
        std::printf(", %.1f tokens per document", double(s.tokens) / s.documents);
      std::printf("\n");
      if (!s.top.empty())
        std::printf("  p_max      %.4f (token %d%s; one-hot stable rank 1/p_max = %.1f)\n", s.p_max,
                    s.top[0].first, spelled(tok, s.top[0].first).c_str(), 1.0 / s.p_max);
      else
        std::printf("  p_max      - (empty shard)\n");
      std::printf("  top-10    ");
      const char* sep = " ";
      for (const auto& [id, n] : s.top) {
        std::printf("%s%d%s %.2f%%", sep, id, spelled(tok, id).c_str(),
                    100.0 * double(n) / double(s.tokens));
        sep = ", ";
      }
      std::printf("\n  valid      yes\n");
      ++valid;
      tokens += s.tokens;
      documents += s.documents;
    } catch (const Error& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "muongpt: error: %s\n", e.what());
    }
  }
  const int64_t n = static_cast<int64_t>(files.size());
  if (n > 1)
    std::printf("%lld of %lld files valid: %s tokens, %s documents\n", (long long)valid,
                (long long)n, with_commas(tokens).c_str(), with_commas(documents).c_str());
  return valid == n ? 0 : 1;
}

}  // namespace muongpt
