#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"
#include "core/toml_reader.h"

namespace muongpt {

MUONGPT_DEFINE_CONFIG_TABLE(schedule_config_keys, ScheduleConfig, "schedule",
                            ValueErrorForm::kKeyEqualsValue, MUONGPT_SCHEDULE_KEYS)

void ScheduleConfig::validate(const std::string& file) const {
  schedule_config_keys().check(*this, file);
}

std::string ScheduleConfig::to_toml() const {
  return schedule_config_keys().write(*this, /*docs=*/false);
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
  ScheduleConfig c;
  schedule_config_keys().read(root, file, c);
  c.validate(file);
  return c;
}

}  // namespace muongpt
