// The run config: every section of a `muongpt train --config FILE` file, with defaults, checks,
// `--set section.key=value` overrides, and a resolved TOML form saved in the run directory.
// Every key is documented in docs/config.md.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/config_table.h"
#include "model/config.h"
#include "optim/config.h"
#include "optim/schedule.h"

namespace muongpt {

// The sections below are rows KEY(type, name, default, check, "one-line doc")
// (core/config_table.h): each row declares a member and drives parsing, the per-key checks, the
// resolved config.toml and the docs test.

#define MUONGPT_RUN_KEYS(KEY)                                                          \
  KEY(std::string, name, "run", directory_name(), "the run directory's name (no '/')") \
  KEY(std::string, dir, "runs", {}, "parent directory: the run lives in <dir>/<name>") \
  KEY(int64_t, seed, 1337, {}, "parameter init and data order")

#define MUONGPT_DATA_KEYS(KEY)                                                                \
  KEY(std::string, train, "", {}, "glob of training shards")                                  \
  KEY(std::string, val, "", {}, "glob of validation shards; \"\" = no evaluation")            \
  KEY(int64_t, val_tokens, 10485760, at_least(0), "tokens of the val shards each evaluation") \
  KEY(int64_t, batch_size, 8, positive(), "sequences per rank per micro-step")                \
  KEY(int64_t, seq_len, 0, {}, "training sequence length T; 0 = [model] seq_len")             \
  KEY(int64_t, grad_accum, 1, positive(), "micro-steps per optimizer step")                   \
  KEY(std::string, mode, "contiguous", one_of({"contiguous", "bos-aligned", "random"}),       \
      "contiguous; bos-aligned: every sequence starts at an EOT; random: seeded random starts")

#define MUONGPT_TRAIN_KEYS(KEY)                                                     \
  KEY(int64_t, steps, 1000, positive(), "optimizer steps of the run")               \
  KEY(int64_t, log_every, 10, positive(), "a metrics record every this many steps") \
  KEY(int64_t, eval_every, 100, at_least(0).note("0 = only at the end"),            \
      "validation every this many steps; 0 = only at the end")                      \
  KEY(int64_t, checkpoint_every, 500, at_least(0).note("0 = only at the end"),      \
      "checkpoint every this many steps; 0 = only at the end")                      \
  KEY(int64_t, keep_checkpoints, 3, positive().says("must be at least 1"),          \
      "the newest this-many checkpoints are kept")                                  \
  KEY(double, clip, 0.0, at_least(0).note("0 = off"), "global gradient-norm clip; 0 = off")

#define MUONGPT_TELEMETRY_KEYS(KEY)                    \
  KEY(int64_t, every, 50, at_least(0).note("0 = off"), \
      "rank telemetry at steps 1, 2 and every multiple of this; 0 = off")

#define MUONGPT_DEVICE_KEYS(KEY)                                                                \
  KEY(std::string, backend, "auto", one_of({"auto", "cpu", "cuda"}), "auto, cpu or cuda")       \
  KEY(std::string, precision, "bf16", one_of({"bf16", "fp32"}),                                 \
      "the GPU model's storage type: bf16 or fp32 (CUDA only)")                                 \
  KEY(std::string, attention, "straightforward", one_of({"straightforward", "flash"}),          \
      "straightforward, or flash (CUDA, bf16 only)")                                            \
  KEY(std::string, comm, "auto", one_of({"auto", "nccl", "mpi"}),                               \
      "between ranks: auto, nccl, or mpi (CUDA ranks staged through host memory)")              \
  KEY(double, comm_timeout, 600.0, at_least(0).says("must be >= 0 seconds (0 = wait forever)"), \
      "seconds a collective may wait for the other ranks; 0 = never give up")                   \
  KEY(double, peak_tflops, 0.0,                                                                 \
      non_negative().says("must be a finite number >= 0 (0 = look the GPU up)"),                \
      "one device's peak TFLOP/s, for the MFU; 0 = the GPU's from a table")

struct RunSection {  // [run]
  MUONGPT_RUN_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const RunSection&) const = default;
};

struct DataConfig {  // [data]
  MUONGPT_DATA_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const DataConfig&) const = default;
};

struct TrainConfig {  // [train]
  MUONGPT_TRAIN_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const TrainConfig&) const = default;
};

struct TelemetryConfig {  // [telemetry]
  MUONGPT_TELEMETRY_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const TelemetryConfig&) const = default;
};

struct DeviceConfig {  // [device]
  MUONGPT_DEVICE_KEYS(MUONGPT_CONFIG_MEMBER)
  bool operator==(const DeviceConfig&) const = default;
};

const ConfigTable<RunSection>& run_section_keys();
const ConfigTable<DataConfig>& data_config_keys();
const ConfigTable<TrainConfig>& train_config_keys();
const ConfigTable<TelemetryConfig>& telemetry_config_keys();
const ConfigTable<DeviceConfig>& device_config_keys();

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
  // Every section with every key spelled out and its doc as a comment; load_run_config of it gives
  // the same config.
  std::string to_toml() const;
};

// One section of a run config with its type erased. RunConfig::to_toml(), the unknown-section
// error and the docs test (tests/train/test_config_docs.cpp) walk these, in file order.
struct RunConfigSection {
  std::string name;                                    // as in the file: "optim.muon"
  std::vector<ConfigKeyInfo> keys;                     // every key with its default and doc
  std::function<std::string(const RunConfig&)> write;  // the section as config.toml has it
  // "key = value" per key, in table order (the values as config.toml writes them)
  std::function<std::vector<std::string>(const RunConfig&)> assignments;
};
const std::vector<RunConfigSection>& run_config_sections();

// Every key of every section as ("section.key", value as TOML), in file order: what `muongpt
// compare` diffs between runs.
std::vector<std::pair<std::string, std::string>> config_values(const RunConfig& cfg);

// Reads `path`, applies `overrides` ("section.key=value", the value in TOML syntax or a bare
// string), and validates everything. Errors name the file (or the override) and the key.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});
RunConfig run_config_from_string(const std::string& toml_text, const std::string& name,
                                 const std::vector<std::string>& overrides = {});

}  // namespace muongpt
