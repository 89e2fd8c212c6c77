// The GPT's shape and numerics: the [model] section of a config file. Names are an interface
// (configs, checkpoints, the PyTorch reference in tools/reference all use them).
#pragma once

#include <toml++/toml.h>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/config_table.h"

namespace muongpt {

// [model] attn_scale: a number, or the string "1/sqrt(d_head)".
struct AttnScale {
  double value = 0;
  bool inv_sqrt_d_head = false;  // "1/sqrt(d_head)" in the file; `value` is then unused

  bool operator==(const AttnScale&) const = default;
};
void read_value(TomlSection& s, std::string_view key, AttnScale& v);
std::string toml_value(const AttnScale& v);
std::string shown_value(const AttnScale& v);

// [model]: KEY(type, name, default, check, "one-line doc"). One row per key declares the member
// and drives parsing, checks, the resolved config.toml and the docs test (core/config_table.h);
// docs/config.md says more about each key.
#define MUONGPT_MODEL_KEYS(KEY)                                                                \
  KEY(int64_t, vocab_size, 50257,                                                              \
      positive() & at_most(65536).says("must fit uint16 token ids (<= 65536)"),                \
      "V, the real vocabulary (GPT-2 BPE)")                                                    \
  KEY(int64_t, vocab_multiple, 128, positive(), "embed/head rows: V rounded up to a multiple") \
  KEY(int64_t, n_layer, 12, positive() & at_most(4096), "transformer blocks")                  \
  KEY(int64_t, d_model, 768, positive() & at_most(65536), "d, the residual width")             \
  KEY(int64_t, d_head, 128, positive() & multiple_of(4).note("half-truncated RoPE"),           \
      "per-head width: H = d / d_head heads")                                                  \
  KEY(int64_t, mlp_ratio, 4, positive() & at_most(64),                                         \
      "MLP hidden width = mlp_ratio * d (unless d_mlp is set)")                                \
  KEY(std::string, mlp, "relu2", one_of({"relu2", "swiglu"}),                                  \
      "the MLP: relu2, or swiglu (gated; adds the weight mlp.w3)")                             \
  KEY(int64_t, d_mlp, 0, non_negative().note("0 = mlp_ratio * d_model") & at_most(1 << 22),    \
      "MLP hidden width F; 0 = mlp_ratio * d_model")                                           \
  KEY(int64_t, seq_len, 1024, positive() & at_most(1 << 20),                                   \
      "longest sequence (RoPE table length)")                                                  \
  KEY(double, norm_eps, 1e-6, positive(), "RMSNorm epsilon")                                   \
  KEY(bool, norm_gains, false, {}, "learned gains on attn_norm, mlp_norm, final_norm")         \
  KEY(AttnScale, attn_scale, AttnScale{0.12}, positive_scale(),                                \
      "attention logit scale, or \"1/sqrt(d_head)\"")                                          \
  KEY(double, rope_base, 1024.0, greater_than(1), "RoPE base")                                 \
  KEY(double, softcap, 15.0, non_negative().note("0 turns it off"), "logit soft-cap; 0 = off")

struct ModelConfig {
  MUONGPT_MODEL_KEYS(MUONGPT_CONFIG_MEMBER)

  int64_t n_head() const { return d_model / d_head; }
  int64_t vocab_padded() const {
    return (vocab_size + vocab_multiple - 1) / vocab_multiple * vocab_multiple;
  }
  // F, the MLP's hidden width: d_mlp when set, else mlp_ratio · d_model.
  int64_t mlp_width() const { return d_mlp > 0 ? d_mlp : mlp_ratio * d_model; }
  // The gated MLP (mlp = "swiglu"): a third weight, mlp.w3, and the extra activations mlp_up and
  // mlp_gate.
  bool swiglu() const { return mlp == "swiglu"; }
  double attention_scale() const;

  // Throws Error(where, "[model] <key> = <value>: <problem>") on the first impossible value.
  void validate(const std::string& where) const;
  // The [model] section with every key spelled out, one "key = value" a line.
  std::string to_toml() const;
  bool operator==(const ModelConfig&) const = default;
};

// The [model] keys (MUONGPT_MODEL_KEYS as a table).
const ConfigTable<ModelConfig>& model_config_keys();

// Reads and validates the [model] section of a parsed config (unknown keys are errors).
ModelConfig model_config_from_toml(const toml::table& root, const std::string& file);
// Reads a config file; only its [model] section is looked at.
ModelConfig load_model_config(const std::string& path);

}  // namespace muongpt
