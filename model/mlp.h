// The MLP sublayer on the CPU, shared by the model (Gpt::forward/backward, N = B·T rows) and the
// KV-cache decoder (one row), so the two cannot drift apart:
//   m = rmsnorm(x) (gain mlp_norm)   h = m·w1ᵀ   b = relu(h)²   y = x + b·w2ᵀ
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/params.h"

namespace muongpt {

// What the forward keeps for the backward (and the telemetry reads).
template <typename T>
struct MlpActs {
  T* in;    // [N, d]   m = rmsnorm(x): feeds w1
  T* rstd;  // [N]
  T* pre;   // [N, F]   h
  T* act;   // [N, F]   b = relu(h)²: feeds w2
};

// y [N, d] = x + MLP(x); y must not alias x.
template <typename T>
void mlp_forward(T* y, const T* x, const MlpActs<T>& a, const BlockWeights<T>& w,
                 const ModelConfig& cfg, int64_t N);

// dx [N, d]: on entry d(y), on return d(x) (the skip connection's dy plus the MLP's). g receives
// the weight gradients (added). dh [N, F] and da [N, d] are scratch.
template <typename T>
void mlp_backward(T* dx, const BlockWeights<T>& g, const T* x, const MlpActs<T>& a,
                  const BlockWeights<T>& w, const ModelConfig& cfg, int64_t N, T* dh, T* da);

}  // namespace muongpt
