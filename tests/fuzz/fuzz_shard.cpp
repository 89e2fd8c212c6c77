// libFuzzer target: arbitrary bytes as a shard file. The reader must either accept the file (and
// then every token is readable) or throw one Error naming the file; never crash or hang.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "data/shard.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace muongpt;
  // The pure header check on the same bytes.
  try {
    const int64_t n = check_shard_header("fuzz", data, static_cast<int64_t>(size));
    if (static_cast<int64_t>(size) != kShardHeaderBytes + 2 * n) __builtin_trap();
  } catch (const Error&) {
  }
  // The file path: write, open, map, scan.
  static const std::string path =
      std::string(::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/muongpt_fuzz_shard_" +
      std::to_string(::getpid()) + ".bin";
  static const struct Cleanup {
    ~Cleanup() { std::remove(path.c_str()); }
  } cleanup;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    Shard s(path);
    const ShardStats st = shard_stats(s);
    if (st.tokens != s.size()) __builtin_trap();
    s.check_tokens();
  } catch (const Error& e) {
    if (std::string(e.what()).rfind(path + ": ", 0) != 0) __builtin_trap();  // names the file
  }
  return 0;
}
