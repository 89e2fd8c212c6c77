// Schedules: the learning-rate multiplier of each step (the [schedule] section) and Muon's
// momentum warmup. Speedrun style by default: no warmup, constant, then a linear cooldown over the
// last 40% of the run to 0.1× (DESIGN.md section 6; docs/optim.md).
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>

#include "optim/config.h"

namespace muongpt {

// [schedule]: KEY(type, name, default, check, "one-line doc") rows (core/config_table.h).
#define MUONGPT_SCHEDULE_KEYS(KEY)                                                                 \
  KEY(int64_t, warmup, 0, at_least(0), "steps of linear warmup: step s gets (s + 1) / warmup")     \
  KEY(double, cooldown_frac, 0.4, fraction(), "the cooldown covers this last fraction of the run") \
  KEY(double, final_ratio, 0.1, non_negative(), "lr multiplier reached at the end of the run")     \
  KEY(std::string, kind, "linear", one_of({"linear", "cosine"}), "shape of the cooldown")

struct ScheduleConfig {
  MUONGPT_SCHEDULE_KEYS(MUONGPT_CONFIG_MEMBER)

  void validate(const std::string& file) const;
  std::string to_toml() const;  // the [schedule] section, every key spelled out, no comments
  bool operator==(const ScheduleConfig&) const = default;
};

// The [schedule] keys as a table.
const ConfigTable<ScheduleConfig>& schedule_config_keys();

// The multiplier on every base lr at 0-based step `step` of a run of `total_steps` steps.
// The cooldown starts at c = max(warmup, (1 − cooldown_frac)·total_steps); with progress
// x = (step − c) / (total_steps − c) clamped to [0, 1]:
//   linear: 1 − (1 − final_ratio)·x         cosine: final_ratio + (1 − final_ratio)·(1 + cos πx)/2
// Before c it is 1 (after the warmup). cooldown_frac = 1 with kind = "cosine" is the classic
// warmup-then-cosine schedule.
double lr_multiplier(const ScheduleConfig& cfg, int64_t step, int64_t total_steps);

// Muon's μ at 0-based step `step`: momentum_start → momentum linearly over momentum_warmup steps,
// then constant.
double muon_momentum(const MuonConfig& cfg, int64_t step);

// Reads the [schedule] section (absent = defaults); unknown keys are errors.
ScheduleConfig schedule_config_from_toml(const toml::table& root, const std::string& file);

}  // namespace muongpt
