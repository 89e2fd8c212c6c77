// Causal softmax attention, the straightforward way: scores, row softmax, weighted sum.
//   q, k, v, y: [B, T, H, dh] (row stride d = H·dh; the layout the projections produce)
//   s[t, u] = scale · q[t] · k[u] for u ≤ t;   p = softmax over u ≤ t;   y[t] = Σ_u p[t, u] v[u]
// The probabilities p [B, H, T, T] are kept for the backward (entries above the diagonal are 0):
//   dp = dy vᵀ,   dv = pᵀ dy,   ds = p ⊙ (dp − Σ_u p ⊙ dp),   dq = scale · ds k,   dk = scale · dsᵀ
//   q
#pragma once

#include <cmath>
#include <cstdint>

#include "core/device.h"
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

// One entry of the softmax backward: ds = p · (dp − Σ p ⊙ dp), given the row's dot = Σ p ⊙ dp.
template <typename T>
MG_HD T softmax_grad_element(T p, T dp, T dot) {
  return p * (dp - dot);
}

// In place on dp[0..len): dp → ds = p ⊙ (dp − Σ p ⊙ dp).
template <typename T>
MG_HD void softmax_row_backward(T* dp, const T* p, int64_t len) {
  T dot = 0;
  for (int64_t u = 0; u < len; ++u) dot += p[u] * dp[u];
  for (int64_t u = 0; u < len; ++u) dp[u] = softmax_grad_element(p[u], dp[u], dot);
}

template <typename T>
void attention_forward(T* y, T* probs, const T* q, const T* k, const T* v, int64_t B, int64_t T_,
                       int64_t H, int64_t dh, T scale);

// dq, dk, dv: [B, T, H, dh], written. scratch: [T, T].
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dy, const T* probs, const T* q,
                        const T* k, const T* v, int64_t B, int64_t T_, int64_t H, int64_t dh,
                        T scale);

// ---- CUDA (attention.cu): the same math with the heads in the layout [B, H, T, dh], so each
// product is one strided batched gemm_cuda over the B·H heads. T = float or __nv_bfloat16 storage;
// GEMMs accumulate in fp32; the softmax is fp32. Device pointers, asynchronous on `stream`; the
// caller passes every buffer (nothing is allocated here).
//
// Storage of the probabilities: the scores S = scale·q kᵀ go to an fp32 scratch (so the softmax
// sees them unrounded), and the probabilities P are stored in T, because they are the A operand
// of the bf16 GEMMs y = P v and dv = Pᵀ dy (gemm_cuda takes A and B of one type). In bf16 each
// probability carries a relative rounding error ≤ 2^-8, which reaches y and dv as at most 2^-8 of
// Σ_u P|v| (resp. Σ_t P|dy|); the masked entries are exact zeros in either type. dP = dy vᵀ is
// kept in fp32 for the softmax backward; dS is stored in T (the A operand of dq and dk).

// [B, T, H, dh] → [B, H, T, dh] (out must not alias in). Moves v into the attention layout, and is
// the backward of heads_merge_cuda (the attention output's gradient).
template <typename T>
void heads_split_cuda(T* out, const T* in, int64_t B, int64_t T_, int64_t H, int64_t dh,
                      CudaStream stream);
// [B, H, T, dh] → [B, T, H, dh] = [B, T, H·dh]. Moves the attention output back for wo, and is
// the backward of heads_split_cuda (dv).
template <typename T>
void heads_merge_cuda(T* out, const T* in, int64_t B, int64_t T_, int64_t H, int64_t dh,
                      CudaStream stream);

// Row-wise causal softmax over rows = B·H·T rows of length T (row r is position t = r mod T):
// probs[u] = softmax(scores[0..t])[u] for u ≤ t, exactly 0 for u > t (scores there are never
// read). scores [rows, T] fp32, probs [rows, T] in T.
template <typename T>
void causal_softmax_cuda(T* probs, const float* scores, int64_t rows, int64_t T_,
                         CudaStream stream);
// ds[u] = p[u]·(dp[u] − Σ_{u'≤t} p[u']·dp[u']) for u ≤ t, exactly 0 for u > t. dscores may alias
// probs (each entry is read before it is overwritten, by the same thread).
template <typename T>
void causal_softmax_backward_cuda(T* dscores, const float* dprobs, const T* probs, int64_t rows,
                                  int64_t T_, CudaStream stream);

// q, k, v, y: [B, H, T, dh]; probs: [B, H, T, T] (written, kept for the backward); scores:
// [B, H, T, T] fp32 scratch.
template <typename T>
void attention_forward_cuda(T* y, T* probs, float* scores, const T* q, const T* k, const T* v,
                            int64_t B, int64_t T_, int64_t H, int64_t dh, float scale,
                            CudaStream stream);

// dq, dk, dv: [B, H, T, dh], written; dy: [B, H, T, dh]. dprobs: [B, H, T, T] fp32 scratch;
// dscores: [B, H, T, T] in T, scratch, which may be `probs` itself (dv, the only other reader of
// probs, is computed first; probs is then overwritten).
template <typename T>
void attention_backward_cuda(T* dq, T* dk, T* dv, float* dprobs, T* dscores, const T* dy,
                             const T* probs, const T* q, const T* k, const T* v, int64_t B,
                             int64_t T_, int64_t H, int64_t dh, float scale, CudaStream stream);

}  // namespace muongpt
