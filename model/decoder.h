// Incremental decoding with a KV cache: one token at a time through the same per-row math as
// Gpt::forward (the ops' shared row functions), so sampling costs O(T·d) per token instead of a
// full forward over the prefix. Float32, CPU.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace muongpt {

class GptDecoder {
 public:
  // params: every parameter, flat, in param_specs(cfg) order (e.g. Gpt<float>::params_flat() or a
  // checkpoint's weights); it must outlive the decoder. max_len ≤ cfg.seq_len.
  GptDecoder(const ModelConfig& cfg, const float* params, int64_t max_len);

  void reset() { len_ = 0; }
  int64_t length() const { return len_; }
  int64_t capacity() const { return max_len_; }
  // Appends `token` at the next position; returns the soft-capped logits [vocab_size] predicting
  // the token after it (valid until the next call). Error when full or the id is out of range.
  const float* push(int32_t token);

 private:
  ModelConfig cfg_;
  GptWeights<float> w_;
  int64_t max_len_, len_ = 0;
  std::vector<float> rope_cos_, rope_sin_;  // [max_len, dh/2]
  std::vector<float> k_cache_, v_cache_;    // [L, max_len, d]: normed, rotated keys; values
  std::vector<float> x_, a_, q_, k_, y_, mid_, h_, up_, gate_, b_, logits_, scores_, rstd_;
};

}  // namespace muongpt
