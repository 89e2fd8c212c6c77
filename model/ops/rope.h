// Rotary position embedding with half truncation, applied per head to rows of dh elements.
// Frequencies (dh/2 of them): the first dh/4 are (1/base)^linspace(0, 1, dh/4), the remaining
// dh/4 are zero, so half of each head's dimensions carry no position (they pass through).
// Element j pairs with j + dh/2; with θ = t · freq_j at position t:
//   y[j]        =  x[j] cos θ + x[j + dh/2] sin θ
//   y[j + dh/2] = −x[j] sin θ + x[j + dh/2] cos θ
// The backward applies the transposed rotation (θ → −θ).
#pragma once

#include <cstdint>

#include "core/hd.h"

namespace muongpt {

// Rotates one pair (a, b) = (x[j], x[j + dh/2]) by the angle whose cosine and sine are c, s
// (s = −sin θ for the backward). Shared by rope_row and the CUDA kernels.
template <typename T>
MG_HD void rope_pair(T& a, T& b, T c, T s) {
  const T a0 = a, b0 = b;
  a = a0 * c + b0 * s;
  b = b0 * c - a0 * s;
}

// Rotates one row in place; sign = +1 forward, −1 backward. cos_t, sin_t: [dh/2] at its position.
template <typename T>
MG_HD void rope_row(T* x, const T* cos_t, const T* sin_t, int64_t half, T sign) {
  for (int64_t j = 0; j < half; ++j) rope_pair(x[j], x[j + half], cos_t[j], sign * sin_t[j]);
}

// cos, sin: [seq, dh/2] tables for positions 0..seq-1 (angles computed in double).
template <typename T>
void rope_tables(T* cos, T* sin, int64_t seq, int64_t dh, double base);

// x: [B, T, H, dh], rotated in place; cos, sin from rope_tables with seq ≥ T.
template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, int64_t B, int64_t T_, int64_t H, int64_t dh);
// dx: [B, T, H, dh], the gradient w.r.t. the rotated rows, turned in place into the gradient
// w.r.t. the rows before rotation.
template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t B, int64_t T_, int64_t H, int64_t dh);

}  // namespace muongpt
