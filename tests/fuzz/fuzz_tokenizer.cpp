// libFuzzer target: arbitrary bytes through the GPT-2 tokenizer. Checks, for every input, that
// decoding gives back the input with invalid UTF-8 replaced (sanitize_utf8), that encoding the
// decoded text gives the same ids, that every id is a mergeable rank, and that the two BPE
// algorithms agree on the input taken as one piece.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace {
const muongpt::Gpt2Tokenizer* g_tok = nullptr;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("MUONGPT_VOCAB");
  const std::string p = path && *path ? path : ".cache/gpt2.tiktoken";
  try {
    g_tok = new muongpt::Gpt2Tokenizer(muongpt::Gpt2Tokenizer::load(p));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_tokenizer: %s (set MUONGPT_VOCAB)\n", e.what());
    std::exit(1);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = g_tok->encode(text);
  for (int32_t id : ids)
    if (id < 0 || id >= 50256) __builtin_trap();
  const std::string back = g_tok->decode(ids);
  if (back != muongpt::sanitize_utf8(text)) __builtin_trap();
  if (g_tok->encode(back) != ids) __builtin_trap();
  if (size > 0 && size <= 128) {
    std::vector<int32_t> a, b;
    g_tok->bpe_scan(text, a);
    g_tok->bpe_heap(text, b);
    if (a != b) __builtin_trap();
  }
  return 0;
}
