// GPT-2 byte-level BPE, token for token the same as tiktoken's `gpt2` encoding (docs/data.md).
//
//   text --(invalid UTF-8 -> U+FFFD)--> pre-tokens (the GPT-2 pattern, PCRE2 with Unicode
//   properties) --(each piece: one token if it is one, else BPE merges by rank)--> ids
//
// Ranks come from a `gpt2.tiktoken` file (tools/fetch_vocab.sh): one line per token, the
// token's bytes in base64, a space, its rank; ranks 0..50255. <|endoftext|> is 50256.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/utf8.h"  // is_valid_utf8, sanitize_utf8

namespace muongpt {

// GPT-2's byte -> code point table: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order (space -> U+0120 'Ġ', newline -> U+010A 'Ċ'). It is how
// GPT-2's encoder.json spells token bytes; we use it to print tokens readably.
const std::array<char32_t, 256>& gpt2_byte_to_unicode();

class Gpt2Tokenizer {
 public:
  static constexpr int32_t kEndOfText = 50256;
  static constexpr int64_t kRanks = 50256;  // mergeable tokens, ranks 0..50255

  // Reads and validates a tiktoken rank file; every problem is an Error naming the file.
  static Gpt2Tokenizer load(const std::string& tiktoken_path);
  // The same from the file's contents; `where` names it in errors.
  static Gpt2Tokenizer parse(std::string_view contents, const std::string& where);

  Gpt2Tokenizer(Gpt2Tokenizer&&) noexcept;
  Gpt2Tokenizer& operator=(Gpt2Tokenizer&&) noexcept;
  ~Gpt2Tokenizer();

  // Ordinary text: "<|endoftext|>" in the text is NOT special (it encodes as its characters).
  // Thread-safe. Invalid UTF-8 is first replaced as sanitize_utf8() does.
  std::vector<int32_t> encode(std::string_view text) const;
  void encode_append(std::string_view text, std::vector<int32_t>& out) const;
  // The bytes of the tokens (EOT decodes to "<|endoftext|>"); an Error for an id out of range.
  // The result is not valid UTF-8 when the ids split a character.
  std::string decode(std::span<const int32_t> ids) const;
  int32_t eot() const { return kEndOfText; }
  int64_t vocab_size() const { return kRanks + 1; }  // 50257
  // A token's bytes, and a printable spelling through gpt2_byte_to_unicode() ("Ġthe").
  std::string_view token_bytes(int32_t id) const;
  std::string token_display(int32_t id) const;

  // The pre-tokens of valid UTF-8 text (exposed for tests and tools).
  std::vector<std::string_view> pretokenize(std::string_view valid_utf8) const;
  // BPE of one piece, by the two algorithms (exposed so tests can compare them): the quadratic
  // scan used for short pieces and the heap used for long ones.
  void bpe_scan(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe_heap(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  struct Impl;
  explicit Gpt2Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace muongpt
