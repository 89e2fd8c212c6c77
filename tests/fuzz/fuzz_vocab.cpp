// libFuzzer target: arbitrary bytes as a tiktoken rank file. The parser must accept it or throw
// one Error; never crash or hang.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "data/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    muongpt::Gpt2Tokenizer::parse(std::string_view(reinterpret_cast<const char*>(data), size),
                                  "fuzz.tiktoken");
  } catch (const muongpt::Error& e) {
    if (std::string(e.what()).rfind("fuzz.tiktoken: ", 0) != 0) __builtin_trap();
  }
  return 0;
}
