// Helpers for the data tests: a temporary directory per test, shard writing, the vocabulary.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace muongpt::testing {

namespace fs = std::filesystem;

// A fresh directory for each test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    dir_ = fs::temp_directory_path() / ("muongpt_data_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write_tokens(const std::string& name, const std::vector<uint16_t>& t) const {
    const std::string p = path(name);
    write_shard(p, t.data(), static_cast<int64_t>(t.size()));
    return p;
  }
  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  fs::path dir_;
};

// The message of the Error `f` throws, or "" when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The file's bytes.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// gpt2.tiktoken: $MUONGPT_VOCAB, else .cache/gpt2.tiktoken in the source tree.
inline std::string vocab_path() {
  if (const char* e = std::getenv("MUONGPT_VOCAB"); e && *e) return e;
  return std::string(MUONGPT_SOURCE_DIR) + "/.cache/gpt2.tiktoken";
}

// The tokenizer, loaded once; nullptr when the vocabulary file is absent.
inline const Gpt2Tokenizer* shared_tokenizer() {
  static const Gpt2Tokenizer* tok = [] {
    return fs::exists(vocab_path()) ? new Gpt2Tokenizer(Gpt2Tokenizer::load(vocab_path()))
                                    : nullptr;
  }();
  return tok;
}

// Skips the test when gpt2.tiktoken is absent, or fails it when MUONGPT_REQUIRE_VOCAB is set (CI
// fetches the file, so there a missing vocabulary is an error, not a reason to skip).
#define MG_REQUIRE_VOCAB()                                                                \
  do {                                                                                    \
    if (!::muongpt::testing::shared_tokenizer()) {                                        \
      if (std::getenv("MUONGPT_REQUIRE_VOCAB"))                                           \
        FAIL() << "MUONGPT_REQUIRE_VOCAB is set but " << ::muongpt::testing::vocab_path() \
               << " is missing";                                                          \
      GTEST_SKIP() << "no gpt2.tiktoken at " << ::muongpt::testing::vocab_path()          \
                   << " (run: bash tools/fetch_vocab.sh .cache/gpt2.tiktoken, or set "    \
                      "MUONGPT_VOCAB)";                                                   \
    }                                                                                     \
  } while (0)

struct CliResult {
  int status;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs the muongpt binary with `args` (already shell-quoted where needed).
inline CliResult run_cli(const std::string& args) {
  const std::string err_file =
      (fs::temp_directory_path() / ("muongpt_cli_err_" + std::to_string(::getpid()))).string();
  // Without $MUONGPT_VOCAB, so that only an explicit --vocab names a vocabulary.
  const std::string cmd =
      "env -u MUONGPT_VOCAB " + std::string(MUONGPT_BIN) + " " + args + " 2>" + err_file;
  FILE* p = popen(cmd.c_str(), "r");
  CliResult r{-1, "", ""};
  if (!p) return r;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = read_file(err_file);
  fs::remove(err_file);
  return r;
}

inline int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace muongpt::testing
