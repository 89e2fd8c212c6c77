// Causal softmax attention, the straightforward way: scores, row softmax, weighted sum.
//   q, k, v, y: [B, T, H, dh] (row stride d = H·dh; the layout the projections produce)
//   s[t, u] = scale · q[t] · k[u] for u ≤ t;   p = softmax over u ≤ t;   y[t] = Σ_u p[t, u] v[u]
// The probabilities p [B, H, T, T] are kept for the backward (entries above the diagonal are 0):
//   dp = dy vᵀ,   dv = pᵀ dy,   ds = p ⊙ (dp − Σ_u p ⊙ dp),   dq = scale · ds k,   dk = scale · dsᵀ
//   q
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace muongpt {

// In place on s[0..len): scores → probabilities (max-subtracted for stability).
template <typename T>
MG_HD void softmax_row(T* s, int64_t len) {
  T m = s[0];
  for (int64_t u = 1; u < len; ++u) m = s[u] > m ? s[u] : m;
  T sum = 0;
  for (int64_t u = 0; u < len; ++u) {
    s[u] = std::exp(s[u] - m);
    sum += s[u];
  }
  T inv = T(1) / sum;
  for (int64_t u = 0; u < len; ++u) s[u] *= inv;
}

// In place on dp[0..len): dp → ds = p ⊙ (dp − Σ p ⊙ dp).
template <typename T>
MG_HD void softmax_row_backward(T* dp, const T* p, int64_t len) {
  T dot = 0;
  for (int64_t u = 0; u < len; ++u) dot += p[u] * dp[u];
  for (int64_t u = 0; u < len; ++u) dp[u] = p[u] * (dp[u] - dot);
}

template <typename T>
void attention_forward(T* y, T* probs, const T* q, const T* k, const T* v, int64_t B, int64_t T_,
                       int64_t H, int64_t dh, T scale);

// dq, dk, dv: [B, T, H, dh], written. scratch: [T, T].
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dy, const T* probs, const T* q,
                        const T* k, const T* v, int64_t B, int64_t T_, int64_t H, int64_t dh,
                        T scale);

}  // namespace muongpt
