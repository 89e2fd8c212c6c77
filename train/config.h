// The run config: every section of a `muongpt train --config FILE` file, with defaults, checks,
// `--set section.key=value` overrides, and a resolved TOML form saved in the run directory.
// Every key is documented in docs/config.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "optim/config.h"
#include "optim/schedule.h"

namespace muongpt {

struct RunSection {  // [run]
  std::string name = "run";
  std::string dir = "runs";  // the run lives in <dir>/<name>
  int64_t seed = 1337;       // parameter init and data order
};

struct DataConfig {   // [data]
  std::string train;  // glob of training shards
  std::string val;    // glob of validation shards ("" = no evaluation)
  int64_t val_tokens = 10485760;
  int64_t batch_size = 8;           // sequences per rank per micro-step
  int64_t seq_len = 0;              // training sequence length T; 0 = [model] seq_len
  int64_t grad_accum = 1;           // micro-steps per optimizer step
  std::string mode = "contiguous";  // contiguous | bos-aligned
};

struct TrainConfig {  // [train]
  int64_t steps = 1000;
  int64_t log_every = 10;
  int64_t eval_every = 100;        // 0 = only at the end
  int64_t checkpoint_every = 500;  // 0 = only at the end
  int64_t keep_checkpoints = 3;
  double clip = 0.0;  // global gradient-norm clip; 0 = off
};

struct TelemetryConfig {  // [telemetry]
  int64_t every = 50;     // 0 = off; otherwise steps 1, 2 and every multiple
};

struct DeviceConfig {              // [device]
  std::string backend = "auto";    // auto | cpu | cuda
  std::string precision = "bf16";  // bf16 | fp32: the GPU model's storage type (CUDA only)
  std::string attention = "straightforward";  // straightforward | flash (CUDA, bf16 only)
  double comm_timeout = 600;  // seconds a collective may wait for the other ranks; 0 = never
  double peak_tflops = 0;     // one device's peak, for the MFU; 0 = the GPU's from a table
};

struct RunConfig {
  std::string file;  // where it was read from (for messages)
  RunSection run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  ScheduleConfig schedule;
  TelemetryConfig telemetry;
  DeviceConfig device;

  int64_t seq() const { return data.seq_len > 0 ? data.seq_len : model.seq_len; }
  std::string run_dir() const;  // <run.dir>/<run.name>
  // Every section with every key spelled out; load_run_config of it gives the same config.
  std::string to_toml() const;
};

// Reads `path`, applies `overrides` ("section.key=value", the value in TOML syntax or a bare
// string), and validates everything. Errors name the file (or the override) and the key.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig run_config_from_string(const std::string& toml_text, const std::string& name);

}  // namespace muongpt
