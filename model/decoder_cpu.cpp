#include <algorithm>

#include "core/error.h"
#include "model/decoder.h"
#include "model/mlp.h"
#include "model/model.h"
#include "model/ops/attention.h"
#include "model/ops/cross_entropy.h"
#include "model/ops/linear.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"

namespace muongpt {

GptDecoder::GptDecoder(const ModelConfig& cfg, const float* params, int64_t max_len)
    : cfg_(cfg),
      w_(bind_weights(cfg, param_specs(cfg), const_cast<float*>(params))),
      max_len_(max_len) {
  check_batch_shape(cfg, 1, max_len);
  const int64_t d = cfg.d_model, dh = cfg.d_head, L = cfg.n_layer;
  rope_cos_.resize(max_len * dh / 2);
  rope_sin_.resize(max_len * dh / 2);
  rope_tables(rope_cos_.data(), rope_sin_.data(), max_len, dh, cfg.rope_base);
  k_cache_.resize(L * max_len * d);
  v_cache_.resize(L * max_len * d);
  for (auto* v : {&x_, &a_, &q_, &k_, &y_, &mid_}) v->resize(d);
  for (auto* v : {&h_, &b_}) v->resize(cfg.mlp_width());
  if (cfg.swiglu())
    for (auto* v : {&up_, &gate_}) v->resize(cfg.mlp_width());
  logits_.resize(cfg.vocab_size);
  scores_.resize(max_len);
  rstd_.resize(cfg.n_head());
}

const float* GptDecoder::push(int32_t token) {
  const int64_t d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head, V = cfg_.vocab_size,
                t = len_;
  const float eps = float(cfg_.norm_eps), scale = float(cfg_.attention_scale()),
              cap = float(cfg_.softcap);
  if (t >= max_len_) fail("decoder", "context is full (", max_len_, " tokens)");
  check_token_ids(&token, nullptr, 1, V, t);
  const float* cos_t = rope_cos_.data() + t * dh / 2;
  const float* sin_t = rope_sin_.data() + t * dh / 2;

  rmsnorm_forward(x_.data(), rstd_.data(), w_.embed + int64_t(token) * d, 1, d, eps);  // [d]
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    const BlockWeights<float>& w = w_.blocks[l];
    float* kc = k_cache_.data() + l * max_len_ * d;  // [max_len, d]
    float* vc = v_cache_.data() + l * max_len_ * d;
    rmsnorm_forward(a_.data(), rstd_.data(), x_.data(), w.attn_norm, 1, d, eps);  // [d]
    linear(q_.data(), a_.data(), w.wq, 1, d, d);
    linear(k_.data(), a_.data(), w.wk, 1, d, d);
    linear(vc + t * d, a_.data(), w.wv, 1, d, d);
    rmsnorm_forward(q_.data(), rstd_.data(), q_.data(), H, dh, eps);  // QK-norm [H, dh]
    rmsnorm_forward(kc + t * d, rstd_.data(), k_.data(), H, dh, eps);
    for (int64_t h = 0; h < H; ++h) {
      rope_row(q_.data() + h * dh, cos_t, sin_t, dh / 2, 1.0f);
      rope_row(kc + t * d + h * dh, cos_t, sin_t, dh / 2, 1.0f);
      for (int64_t u = 0; u <= t; ++u) {  // scores against every cached key of this head
        float s = 0;
        for (int64_t j = 0; j < dh; ++j) s += q_[h * dh + j] * kc[u * d + h * dh + j];
        scores_[u] = scale * s;
      }
      softmax_row(scores_.data(), t + 1);
      float* y = y_.data() + h * dh;
      std::fill(y, y + dh, 0.0f);
      for (int64_t u = 0; u <= t; ++u)
        for (int64_t j = 0; j < dh; ++j) y[j] += scores_[u] * vc[u * d + h * dh + j];
    }
    linear_add(mid_.data(), x_.data(), y_.data(), w.wo, 1, d, d);  // x + y·woᵀ [d]
    const MlpActs<float> m = {a_.data(),    rstd_.data(), h_.data(), up_.data(),
                              gate_.data(), b_.data()};  // up_, gate_: swiglu only (else empty)
    mlp_forward(x_.data(), mid_.data(), m, w, cfg_, 1);  // the model's MLP sublayer, one row
  }
  rmsnorm_forward(a_.data(), rstd_.data(), x_.data(), w_.final_norm, 1, d, eps);
  linear(logits_.data(), a_.data(), w_.head, 1, d, V);
  for (float& z : logits_) z = softcap(z, cap);
  ++len_;
  return logits_.data();
}

}  // namespace muongpt
