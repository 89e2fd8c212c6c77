// A sweep: the variants of a base config, each an ordinary run directory <dir>/<sweep>/<variant>/
// (docs/sweeps.md). `muongpt sweep` runs them; `muongpt compare` reads them back.
#pragma once

#include <string>
#include <vector>

#include "train/config.h"

namespace muongpt {

struct SweepVariant {
  std::string name;
  std::vector<std::string> sets;  // what this variant changes ("section.key=value", as --set)
  RunConfig cfg;                  // base + the sweep's common sets + these, resolved
};

struct Sweep {
  std::string file;               // the sweep file
  std::string name;               // [sweep] name, default the file's stem
  std::string base;               // the base config, as a path from the working directory
  std::string dir;                // where the variants live: <dir>/<name>
  std::vector<std::string> sets;  // applied to every variant, before its own
  std::vector<SweepVariant> variants;
};

// Reads and checks a sweep file, resolving every variant's config up front (so a bad key or
// value fails before anything trains). Errors name the file and the key.
Sweep load_sweep(const std::string& path);

// Where a variant's run stands: not started, stopped part way (it resumes), or done.
enum class VariantState { fresh, partial, done };
VariantState variant_state(const SweepVariant& v);
const char* variant_state_name(VariantState s);

}  // namespace muongpt
