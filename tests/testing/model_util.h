// Helpers for model tests: tiny configs, and weights where every gradient is informative.
#pragma once

#include <cmath>
#include <string>

#include "core/toml_reader.h"
#include "model/config.h"
#include "model/gpt.h"

namespace muongpt::testing {

inline ModelConfig config_from_text(const std::string& toml_text) {
  return model_config_from_toml(parse_toml_string(toml_text, "test-config"), "test-config");
}

// The tiny configs of the gradient checks (also the fixtures' configs).
inline ModelConfig tiny_config() {
  return config_from_text(
      "[model]\nvocab_size = 96\nvocab_multiple = 128\nn_layer = 2\nd_model = 64\n"
      "d_head = 32\nseq_len = 16\nsoftcap = 15.0\n");
}
inline ModelConfig tiny_gains_config() {
  return config_from_text(
      "[model]\nvocab_size = 96\nvocab_multiple = 128\nn_layer = 2\nd_model = 64\n"
      "d_head = 32\nseq_len = 16\nsoftcap = 0.0\nnorm_gains = true\n"
      "attn_scale = \"1/sqrt(d_head)\"\n");
}

// The gated MLP: tiny with mlp = "swiglu", norm gains on (the mlp_norm gain's gradient then sums
// both branches' input gradients) and F = 192 = 8/3·64 rounded up to a multiple of 64, the
// parameter-matched width (docs/config.md); also the fixture gpt_tiny_swiglu's config.
inline ModelConfig tiny_swiglu_config() {
  return config_from_text(
      "[model]\nvocab_size = 96\nvocab_multiple = 128\nn_layer = 2\nd_model = 64\n"
      "d_head = 32\nmlp = \"swiglu\"\nd_mlp = 192\nseq_len = 16\nsoftcap = 15.0\n"
      "norm_gains = true\n");
}

// The design's init zeroes wo, w2 and head, which would make most gradients exactly zero; tests
// use nonzero weights everywhere (the same distributions as tools/reference/make_fixtures.py).
template <typename T>
void randomize_params(Gpt<T>& model, uint64_t seed) {
  Rng rng(seed);
  const double d = double(model.config().d_model);
  for (size_t i = 0; i < model.specs().size(); ++i) {
    const ParamSpec& s = model.specs()[i];
    T* p = model.param(i).template data<T>();
    const bool gain = s.shape.size() == 1;
    const bool table = s.name == "embed.weight" || s.name == "head.weight";
    const double bound =
        s.shape.size() == 2 ? std::sqrt(3.0) * 0.5 / std::sqrt(double(s.shape[1])) : 0;
    for (int64_t j = 0; j < s.numel(); ++j) {
      if (gain)
        p[j] = T(1 + 0.2 * rng.normal());
      else if (s.name == "embed.weight")
        p[j] = T(rng.normal());
      else if (table)
        p[j] = T(5.0 / std::sqrt(d) * rng.normal());
      else
        p[j] = T(rng.uniform(-bound, bound));
    }
  }
}

}  // namespace muongpt::testing
