// Residual add, the skip connection of the residual stream: x ← x + y, elementwise over n values.
// (The CPU model folds it into linear_forward's `residual` argument; the GPU model adds it with
// this kernel when the GEMM epilogue does not.)
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/hd.h"

namespace muongpt {

template <typename T>
MG_HD T residual_add_element(T x, T y) {
  return x + y;
}

// x, y: [n]; x += y. y may alias x (x ← 2x).
template <typename T>
void residual_add(T* x, const T* y, int64_t n);

// ---- CUDA (residual.cu): T = float or __nv_bfloat16; the sum is taken in fp32 and rounded once.
template <typename T>
void residual_add_cuda(T* x, const T* y, int64_t n, CudaStream stream);

}  // namespace muongpt
