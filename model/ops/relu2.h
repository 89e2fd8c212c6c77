// ReLU²: b = max(h, 0)², db/dh = 2·max(h, 0). Elementwise over n values.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/hd.h"

namespace muongpt {

template <typename T>
MG_HD T relu2(T h) {
  return h > T(0) ? h * h : T(0);
}
template <typename T>
MG_HD T relu2_grad(T h) {
  return h > T(0) ? T(2) * h : T(0);
}

template <typename T>
void relu2_forward(T* out, const T* h, int64_t n);
// dh = dout · relu2'(h); dh may alias dout.
template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int64_t n);

// ---- CUDA (relu2.cu): T = float or __nv_bfloat16, fp32 arithmetic, device pointers, async on
// `stream`. out may alias h; dh may alias dout.
template <typename T>
void relu2_forward_cuda(T* out, const T* h, int64_t n, CudaStream stream);
template <typename T>
void relu2_backward_cuda(T* dh, const T* dout, const T* h, int64_t n, CudaStream stream);

}  // namespace muongpt
