// Host-side pieces every Optimizer implementation shares (CPU, CUDA, later multi-rank): AdamW's
// per-step constants and the checkpoint state format: tensor names, the JSON beside them and the
// checks load_state() makes. One definition, so the implementations write and accept the same
// checkpoints and refuse bad ones with the same messages.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "optim/config.h"
#include "optim/optimizer.h"
#include "optim/update_math.h"

namespace muongpt {

// AdamW's constants for the 1-based step t and lr = base lr · schedule multiplier: computed in
// double and rounded to float once (what adamw_element() takes).
AdamWConsts adamw_consts(const AdamWConfig& cfg, double lr, double wd, int64_t t);

// The statistics a step starts with: its index, lr multiplier and Muon momentum μ (counters 0).
StepStats begin_step_stats(const MuonConfig& muon, int64_t step, double lr_scale);

// A parameter as the optimizer state describes it.
struct StateParam {
  std::string name;
  std::vector<int64_t> shape;
  bool muon = false;
};

// Its state tensors, in file order: {"muon.buf.<name>"} or {"adamw.m.<name>", "adamw.v.<name>"}.
std::vector<std::string> state_tensor_names(const StateParam& p);

// {"format", "version", "steps_taken", "last_step", "params": [{name, optimizer, shape}]}.
nlohmann::json optimizer_state_json(const std::vector<StateParam>& params, int64_t steps_taken,
                                    int64_t last_step);

struct StateCounters {
  int64_t steps_taken = 0;
  int64_t last_step = -1;
};

// Checks a checkpoint against `params` before anything is loaded: the JSON's format, version,
// parameter names, optimizers and shapes, and that the file holds no "adamw."/"muon." tensor the
// parameters do not expect. Errors name `where`. Returns the counters the JSON holds.
StateCounters check_optimizer_state(const SafetensorsFile& file, const nlohmann::json& json,
                                    const std::vector<StateParam>& params,
                                    const std::string& where);

// One state tensor: present, F32 and of `shape`, else an error naming `where`.
std::vector<float> read_state_tensor(const SafetensorsFile& file, const std::string& name,
                                     const std::vector<int64_t>& shape, const std::string& where);

}  // namespace muongpt
