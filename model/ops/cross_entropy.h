// Soft-capped logits and their mean cross-entropy over the real vocabulary (V columns; padded
// vocabulary rows of the head never reach the softmax).
//   z = cap · tanh(l / cap)   (cap = 0: z = l)
//   loss = (1/N) Σ_n [ logsumexp(z[n, :]) − z[n, target_n] ]
// Backward, with p = softmax(z[n, :]):
//   dl = dloss/N · (p − onehot(target)) · (1 − (z/cap)²)
// using tanh' = 1 − tanh², so the backward needs only the capped logits and each row's
// logsumexp, both saved by the forward.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/device.h"
#include "core/hd.h"

namespace muongpt {

template <typename T>
MG_HD T softcap(T l, T cap) {
  return cap > T(0) ? cap * std::tanh(l / cap) : l;
}
// d z / d l expressed through the capped value z.
template <typename T>
MG_HD T softcap_grad(T z, T cap) {
  if (cap <= T(0)) return T(1);
  T t = z / cap;
  return T(1) - t * t;
}

// One entry of the gradient w.r.t. an uncapped logit, from its capped value z, the row's lse and
// whether it is the target column: scale · (p − [target]) · softcap'(z), p = exp(z − lse). Used by
// the GPU backward (the CPU loop vectorises its own form of the same formula). p − 1 is exact in
// fp32 for p ≥ 1/2, so the target entry keeps its relative accuracy even when p → 1.
template <typename T>
MG_HD T softcap_cross_entropy_grad(T z, T lse, bool is_target, T cap, T scale) {
  const T p = std::exp(z - lse);
  return scale * ((is_target ? p - T(1) : p) * softcap_grad(z, cap));
}

// logits: [N, V], capped in place. lse: [N] written. Returns the mean loss.
// Row sums accumulate in double whatever T is.
template <typename T>
T softcap_cross_entropy_forward(T* logits, T* lse, const int32_t* targets, int64_t N, int64_t V,
                                T cap);

// Turns the capped logits [N, V] into the gradient of (dloss · mean loss) w.r.t. the uncapped
// logits, in place.
template <typename T>
void softcap_cross_entropy_backward(T* logits, const T* lse, const int32_t* targets, int64_t N,
                                    int64_t V, T cap, T dloss);

// ---- CUDA (cross_entropy.cu): the logits buffer is [N, Vp] in T (float or __nv_bfloat16) with
// row stride Vp ≥ V; only its first V columns are real vocabulary. Device pointers, asynchronous
// on `stream`; targets must lie in [0, V) (the model checks them on the host).
//
// Forward: one block per row computes the capped logits in registers (the buffer is NOT modified:
// unlike the CPU path, the backward recomputes the cap), their logsumexp online (a running max
// and a running sum rescaled when the max grows, in fp32) and the row's loss. losses: [N] fp32,
// lse: [N] fp32, written. mean_loss (one double, may be null) = Σ losses / N, summed in a fixed
// order in double by one block: deterministic.
template <typename T>
void softcap_cross_entropy_forward_cuda(float* losses, float* lse, double* mean_loss,
                                        const T* logits, const int32_t* targets, int64_t N,
                                        int64_t V, int64_t Vp, float cap, CudaStream stream);

// Backward, in place: logits [N, Vp] (the uncapped logits the forward read) become the gradient of
// dloss · mean loss w.r.t. them, dloss/N · (softmax(z) − onehot(target)) · (1 − (z/cap)²), with z
// recomputed from the logits and p from the saved lse; no probability matrix is materialised.
// Padded columns V..Vp get exactly 0.
template <typename T>
void softcap_cross_entropy_backward_cuda(T* logits, const float* lse, const int32_t* targets,
                                         int64_t N, int64_t V, int64_t Vp, float cap, float dloss,
                                         CudaStream stream);

}  // namespace muongpt
