// The GPT's shape and numerics: the [model] section of a config file. Names are an interface
// (configs, checkpoints, the PyTorch reference in tools/reference all use them).
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>

namespace muongpt {

struct ModelConfig {
  int64_t vocab_size = 50257;    // V: real vocabulary (GPT-2 BPE)
  int64_t vocab_multiple = 128;  // embed/head rows are V rounded up to a multiple of this
  int64_t n_layer = 12;
  int64_t d_model = 768;   // d
  int64_t d_head = 128;    // H = d / d_head heads
  int64_t mlp_ratio = 4;   // MLP hidden width = mlp_ratio · d
  int64_t seq_len = 1024;  // longest sequence (RoPE table length)
  double norm_eps = 1e-6;
  bool norm_gains = false;              // learned gains on attn_norm, mlp_norm, final_norm
  double attn_scale = 0.12;             // used unless attn_scale_inv_sqrt_dh
  bool attn_scale_inv_sqrt_dh = false;  // attn_scale = "1/sqrt(d_head)" in the file
  double rope_base = 1024.0;
  double softcap = 15.0;  // logit soft-cap; 0 = off

  int64_t n_head() const { return d_model / d_head; }
  int64_t vocab_padded() const {
    return (vocab_size + vocab_multiple - 1) / vocab_multiple * vocab_multiple;
  }
  int64_t d_mlp() const { return mlp_ratio * d_model; }
  double attention_scale() const;

  // Throws Error(where, "[model] <key>: <problem>") on the first impossible value.
  void validate(const std::string& where) const;
  // The [model] section with every key spelled out.
  std::string to_toml() const;
};

// Reads and validates the [model] section of a parsed config (unknown keys are errors).
ModelConfig model_config_from_toml(const toml::table& root, const std::string& file);
// Reads a config file; only its [model] section is looked at.
ModelConfig load_model_config(const std::string& path);

}  // namespace muongpt
