// Checkpoints: runs/<name>/checkpoints/step_NNNNNN/ holding
//   model.safetensors      every parameter, float32, our names (loadable by Python safetensors)
//   optimizer.safetensors  optimizer state tensors
//   state.json             step, tokens, loader position, RNG, optimizer scalars, format version
//   config.toml            the resolved run config
// A checkpoint is written into a hidden temporary directory, flushed to disk, and renamed into
// place, so a directory named step_* is always complete; a killed writer leaves only a
// temporary directory, which the next save or resume removes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/config.h"
#include "model/params.h"

namespace muongpt {

inline constexpr int kCheckpointVersion = 1;

struct CheckpointContents {
  std::vector<SafetensorsTensor> optimizer_tensors;
  nlohmann::json state;     // written as state.json (the version is added)
  std::string config_toml;  // written as config.toml
};

// Writes the checkpoint of `step` and then deletes all but the newest `keep` (≥ 1). Returns
// the checkpoint directory.
// `params`: every parameter flat [P] in `specs` order (host memory).
std::string save_checkpoint(const std::string& run_dir, int64_t step,
                            const std::vector<ParamSpec>& specs, const float* params,
                            const CheckpointContents& contents, int64_t keep);
// The newest complete checkpoint directory of a run, or "" when it has none.
std::string latest_checkpoint(const std::string& run_dir);
std::vector<std::string> list_checkpoints(const std::string& run_dir);  // oldest first
// Resuming from an older checkpoint abandons the newer ones: they are renamed
// abandoned_step_NNNNNN (kept, but no longer "latest"). Returns their new paths.
std::vector<std::string> set_aside_checkpoints_after(const std::string& run_dir, int64_t step);

// A checkpoint directory, read and validated (missing files, truncation, bad JSON are Errors
// naming the file).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& state() const { return state_; }
  // state.json's fields, checked when the checkpoint is opened (Errors name the file).
  int64_t step() const { return state_["step"].get<int64_t>(); }
  int64_t tokens() const { return state_["tokens"].get<int64_t>(); }
  double elapsed_s() const { return state_.value("elapsed_s", 0.0); }  // 0 before it was saved
  const nlohmann::json& optimizer_json() const { return state_["optimizer"]; }
  // The loader's position; Error when the checkpoint has none (written by a random-data run).
  const nlohmann::json& loader_json() const;
  const std::string& config_toml() const { return config_toml_; }
  const SafetensorsFile& optimizer() const { return optimizer_; }
  // The [model] section this checkpoint was written for.
  ModelConfig model_config() const;
  // Every parameter, flat in param_specs(cfg) order; Error naming the file and tensor when a
  // name is missing, a shape differs or the dtype is not F32.
  std::vector<float> weights(const ModelConfig& cfg) const;

 private:
  std::string dir_;
  nlohmann::json state_;
  std::string config_toml_;
  SafetensorsFile model_, optimizer_;
};

// Error unless `cfg` is the model the checkpoint holds (names the first differing key).
void check_same_model(const ModelConfig& checkpoint_cfg, const ModelConfig& cfg,
                      const std::string& where);

}  // namespace muongpt
