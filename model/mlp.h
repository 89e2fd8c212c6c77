// The MLP sublayer on the CPU, shared by the model (Gpt::forward/backward, N = B·T rows) and the
// KV-cache decoder (one row), so the two cannot drift apart:
//   m = rmsnorm(x) (gain mlp_norm)   h = m·w1ᵀ
//   relu2:   b = relu(h)²
//   swiglu:  u = m·w3ᵀ   g = silu(h)   b = g ∘ u
//   y = x + b·w2ᵀ
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/params.h"
#include "model/profile.h"

namespace muongpt {

// What the forward keeps for the backward (and the telemetry reads). F = cfg.mlp_width().
template <typename T>
struct MlpActs {
  T* in;    // [N, d]   m = rmsnorm(x): feeds w1 (and w3)
  T* rstd;  // [N]
  T* pre;   // [N, F]   h = m·w1ᵀ
  T* up;    // [N, F]   u = m·w3ᵀ (swiglu; null for relu2)
  T* gate;  // [N, F]   silu(h), kept for the telemetry only (swiglu; null for relu2)
  T* act;   // [N, F]   b = relu(h)² or silu(h)·u: feeds w2
};

// y [N, d] = x + MLP(x); y must not alias x.
template <typename T>
void mlp_forward(T* y, const T* x, const MlpActs<T>& a, const BlockWeights<T>& w,
                 const ModelConfig& cfg, int64_t N, OpClock* clock = nullptr);

// dx [N, d]: on entry d(y), on return d(x) (the skip connection's dy plus the MLP's). g receives
// the weight gradients (added). dh and da [N, d] are scratch; dh holds [N, F] for relu2 and
// [2, N, F] for swiglu (d(h), then d(u)).
template <typename T>
void mlp_backward(T* dx, const BlockWeights<T>& g, const T* x, const MlpActs<T>& a,
                  const BlockWeights<T>& w, const ModelConfig& cfg, int64_t N, T* dh, T* da,
                  OpClock* clock = nullptr);

// Elements of mlp_backward's dh scratch: N·F, or 2·N·F for swiglu.
inline int64_t mlp_backward_scratch(const ModelConfig& cfg, int64_t N) {
  return (cfg.swiglu() ? 2 : 1) * N * cfg.mlp_width();
}

}  // namespace muongpt
