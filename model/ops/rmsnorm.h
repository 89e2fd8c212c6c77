// RMSNorm over rows of n elements, optionally with a per-feature gain g [n]:
//   r = 1 / sqrt(mean(x²) + eps),   y = x · r · g
// Backward, with u = g ⊙ dy (u = dy without a gain):
//   dx = r · u − x · r³ · (Σ u ⊙ x) / n,   dg += dy ⊙ x · r
// The same op serves the block norms ([N, d] rows) and QK-norm ([N·H, dh] rows).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace muongpt {

// Normalises one row; returns r (saved for the backward).
template <typename T>
MG_HD T rmsnorm_row_forward(T* y, const T* x, const T* g, int64_t n, T eps) {
  T ss = 0;
  for (int64_t j = 0; j < n; ++j) ss += x[j] * x[j];
  T r = T(1) / std::sqrt(ss / T(n) + eps);
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * r * (g ? g[j] : T(1));
  return r;
}

// dx may alias dy when !accumulate (the row's reduction is taken before dx is written).
template <typename T>
MG_HD void rmsnorm_row_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, T r, int64_t n,
                                bool accumulate) {
  T s = 0;
  for (int64_t j = 0; j < n; ++j) s += (g ? g[j] : T(1)) * dy[j] * x[j];
  const T c = r * r * r * s / T(n);
  for (int64_t j = 0; j < n; ++j) {
    if (dg) dg[j] += dy[j] * x[j] * r;
    T v = r * (g ? g[j] : T(1)) * dy[j] - x[j] * c;
    dx[j] = accumulate ? dx[j] + v : v;
  }
}

// y, x: [rows, n]; g: [n] or null; rstd: [rows] (written).
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t n, T eps);

// dx: [rows, n] (written, or added to when accumulate); dg: [n] accumulated, or null.
template <typename T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd,
                      int64_t rows, int64_t n, bool accumulate);

}  // namespace muongpt
