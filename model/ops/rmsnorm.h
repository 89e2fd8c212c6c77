// RMSNorm over rows of n elements, optionally with a per-feature gain g [n]:
//   r = 1 / sqrt(mean(x²) + eps),   y = x · r · g
// Backward, with u = g ⊙ dy (u = dy without a gain):
//   dx = r · u − x · r³ · (Σ u ⊙ x) / n,   dg += dy ⊙ x · r
// The same op serves the block norms ([N, d] rows) and QK-norm ([N·H, dh] rows).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/device.h"
#include "core/hd.h"

namespace muongpt {

// The per-row and per-element pieces, shared by the CPU loops below and the CUDA kernels (which
// take the row sums Σx² and Σ g·dy·x as parallel reductions instead of sequential loops).
// r from the row's sum of squares:
template <typename T>
MG_HD T rmsnorm_rstd(T sum_sq, int64_t n, T eps) {
  return T(1) / std::sqrt(sum_sq / T(n) + eps);
}
// c = r³ · (Σ g·dy·x) / n, the coefficient of x in dx.
template <typename T>
MG_HD T rmsnorm_backward_coef(T r, T s, int64_t n) {
  return r * r * r * s / T(n);
}
// One element of dx (g = 1 without a gain).
template <typename T>
MG_HD T rmsnorm_dx(T dy, T x, T g, T r, T c) {
  return r * g * dy - x * c;
}

// Normalises one row; returns r (saved for the backward).
template <typename T>
MG_HD T rmsnorm_row_forward(T* y, const T* x, const T* g, int64_t n, T eps) {
  T ss = 0;
  for (int64_t j = 0; j < n; ++j) ss += x[j] * x[j];
  T r = rmsnorm_rstd(ss, n, eps);
  for (int64_t j = 0; j < n; ++j) y[j] = x[j] * r * (g ? g[j] : T(1));
  return r;
}

// dx may alias dy when !accumulate (the row's reduction is taken before dx is written).
template <typename T>
MG_HD void rmsnorm_row_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, T r, int64_t n,
                                bool accumulate) {
  T s = 0;
  for (int64_t j = 0; j < n; ++j) s += (g ? g[j] : T(1)) * dy[j] * x[j];
  const T c = rmsnorm_backward_coef(r, s, n);
  for (int64_t j = 0; j < n; ++j) {
    if (dg) dg[j] += dy[j] * x[j] * r;
    T v = rmsnorm_dx(dy[j], x[j], g ? g[j] : T(1), r, c);
    dx[j] = accumulate ? dx[j] + v : v;
  }
}

// y, x: [rows, n]; g: [n] or null; rstd: [rows] (written).
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t n, T eps);
// Without a gain (the embedding's norm, QK-norm).
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, int64_t rows, int64_t n, T eps) {
  rmsnorm_forward(y, rstd, x, static_cast<const T*>(nullptr), rows, n, eps);
}

// dx: [rows, n] (written, or added to when accumulate); dg: [n] accumulated, or null.
template <typename T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd,
                      int64_t rows, int64_t n, bool accumulate);
// Without a gain, dx written (it may alias dy).
template <typename T>
void rmsnorm_backward(T* dx, const T* dy, const T* x, const T* rstd, int64_t rows, int64_t n) {
  rmsnorm_backward(dx, static_cast<T*>(nullptr), dy, x, static_cast<const T*>(nullptr), rstd, rows,
                   n, false);
}

// ---- CUDA (rmsnorm.cu): T = float or __nv_bfloat16 storage, fp32 arithmetic and statistics. All
// pointers are device memory; calls are asynchronous on `stream`. One warp per row.

// y, x: [rows, n] (y may alias x); g: [n] or null; rstd: [rows] fp32, written.
template <typename T>
void rmsnorm_forward_cuda(T* y, float* rstd, const T* x, const T* g, int64_t rows, int64_t n,
                          float eps, CudaStream stream);

// fp32 scratch (in floats) that rmsnorm_backward_cuda needs for the gain gradient.
int64_t rmsnorm_backward_scratch_floats(int64_t rows, int64_t n);

// dx: [rows, n], written (or added to when accumulate; dx may alias dy only when !accumulate).
// dg: [n] fp32, accumulated (+=) deterministically: fixed chunks of rows write partial sums into
// `scratch` (rmsnorm_backward_scratch_floats floats), which one more kernel adds up in a fixed
// order in double; no float atomics, so the same inputs give the same bits every run. dg and
// scratch may be null (no gain gradient wanted). dg is taken before dx is written, so the
// aliasing above is safe.
template <typename T>
void rmsnorm_backward_cuda(T* dx, float* dg, const T* dy, const T* x, const T* g, const float* rstd,
                           int64_t rows, int64_t n, bool accumulate, float* scratch,
                           CudaStream stream);

}  // namespace muongpt
