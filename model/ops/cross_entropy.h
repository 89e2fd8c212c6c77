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

}  // namespace muongpt
