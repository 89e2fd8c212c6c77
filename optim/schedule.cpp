#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"

namespace muongpt {

void ScheduleConfig::validate(const std::string& file) const {
  if (warmup < 0) fail(file, "[schedule] warmup = ", warmup, ": must be >= 0");
  if (!(cooldown_frac >= 0 && cooldown_frac <= 1))
    fail(file, "[schedule] cooldown_frac = ", cooldown_frac, ": must be in [0, 1]");
  if (!(final_ratio >= 0) || !std::isfinite(final_ratio))
    fail(file, "[schedule] final_ratio = ", final_ratio, ": must be >= 0");
  if (kind != "linear" && kind != "cosine")
    fail(file, "[schedule] kind = \"", kind, "\": expected \"linear\" or \"cosine\"");
}

std::string ScheduleConfig::to_toml() const {
  std::ostringstream os;
  os << "[schedule]\n"
     << "warmup = " << warmup << "\n"
     << "cooldown_frac = " << optim_toml_float(cooldown_frac) << "\n"
     << "final_ratio = " << optim_toml_float(final_ratio) << "\n"
     << "kind = " << optim_toml_string(kind) << "\n";
  return os.str();
}

double lr_multiplier(const ScheduleConfig& cfg, int64_t step, int64_t total_steps) {
  if (step < cfg.warmup) return double(step + 1) / double(cfg.warmup);
  const double total = double(total_steps);
  const double start = std::max(double(cfg.warmup), (1.0 - cfg.cooldown_frac) * total);
  if (double(step) < start || total <= start) return 1.0;
  const double x = std::clamp((double(step) - start) / (total - start), 0.0, 1.0);
  const double f = cfg.final_ratio;
  if (cfg.kind == "cosine") return f + (1.0 - f) * 0.5 * (1.0 + std::cos(std::numbers::pi * x));
  return 1.0 - (1.0 - f) * x;
}

double muon_momentum(const MuonConfig& cfg, int64_t step) {
  if (cfg.momentum_warmup <= 0) return cfg.momentum;
  const double frac = std::min(1.0, double(std::max<int64_t>(step, 0)) / cfg.momentum_warmup);
  return (1.0 - frac) * cfg.momentum_start + frac * cfg.momentum;
}

ScheduleConfig schedule_config_from_toml(const toml::table& root, const std::string& file) {
  TomlSection s = TomlSection::of(root, file, "schedule");
  ScheduleConfig c;
  c.warmup = s.get_int("warmup", c.warmup);
  c.cooldown_frac = s.get_float("cooldown_frac", c.cooldown_frac);
  c.final_ratio = s.get_float("final_ratio", c.final_ratio);
  c.kind = s.get_string("kind", c.kind);
  s.finish();
  c.validate(file);
  return c;
}

}  // namespace muongpt
