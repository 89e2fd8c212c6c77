// libFuzzer target: arbitrary bytes as a run config and `--set` overrides. The input's lines
// that start with "--set " are overrides (applied in order), the rest is the TOML file. Reading
// must give a config or throw one Error; never crash, hang or throw anything else. What it
// accepts must read back from its own resolved form unchanged (load_run_config checks that
// itself; here it is checked again from the outside).
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::string text;
  std::vector<std::string> sets;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("--set ", 0) == 0)
      sets.push_back(line.substr(6));
    else
      text += line + "\n";
  }
  try {
    const muongpt::RunConfig cfg = muongpt::run_config_from_string(text, "fuzz.toml", sets);
    const muongpt::RunConfig back = muongpt::run_config_from_string(cfg.to_toml(), "fuzz.toml");
    if (back.to_toml() != cfg.to_toml()) __builtin_trap();
  } catch (const muongpt::Error& e) {
    const std::string what = e.what();
    if (what.rfind("fuzz.toml", 0) != 0 && what.rfind("--set ", 0) != 0) __builtin_trap();
  }
  return 0;
}
