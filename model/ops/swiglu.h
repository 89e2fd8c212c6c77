// SwiGLU, the gated MLP's activation (Shazeer 2020, "GLU Variants Improve Transformer"; Llama's
// MLP): from the two branches h = m·w1ᵀ (activated) and u = m·w3ᵀ (linear), elementwise over n
// values,
//   gate = silu(h) = h·σ(h),   act = gate·u,
//   d h = d act · u · silu'(h),   silu'(h) = σ(h)·(1 + h·(1 − σ(h))),
//   d u = d act · silu(h).
// σ(h) = 1 / (1 + e^(−h)) is evaluated as written: for h → −∞, e^(−h) overflows to +inf and σ
// to 0 (no NaN), for h → +∞ σ = 1, so silu and silu' are finite for every finite h.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/device.h"
#include "core/hd.h"

namespace muongpt {

template <typename T>
MG_HD T sigmoid(T h) {
  return T(1) / (T(1) + std::exp(-h));
}
template <typename T>
MG_HD T silu(T h) {
  return h * sigmoid(h);
}
template <typename T>
MG_HD T silu_grad(T h) {
  const T s = sigmoid(h);
  return s * (T(1) + h * (T(1) - s));
}
// The backward's two outputs per element (the CPU loop and the kernels evaluate exactly these).
template <typename T>
MG_HD T swiglu_grad_h(T dact, T h, T u) {
  return dact * u * silu_grad(h);
}
template <typename T>
MG_HD T swiglu_grad_u(T dact, T h) {
  return dact * silu(h);
}

// gate [n] = silu(h), act [n] = gate·u. The forward keeps gate for the telemetry (the activated
// branch's stable rank); the backward recomputes σ from h instead of reading it.
template <typename T>
void swiglu_forward(T* act, T* gate, const T* h, const T* u, int64_t n);
// dh = dact·u·silu'(h), du = dact·silu(h); dh may alias dact (du may not).
template <typename T>
void swiglu_backward(T* dh, T* du, const T* dact, const T* h, const T* u, int64_t n);

// ---- CUDA (swiglu.cu, kernels in swiglu_kernels.cuh): T = float or __nv_bfloat16, fp32
// arithmetic, one rounding to T per stored value, device pointers, async on `stream`. Aliasing as
// on the CPU. Not bit-identical to the CPU: the device's expf is not glibc's (both within 2 ulp),
// and nvcc contracts a·b + c into FMAs; docs/numerics.md gives the tolerance.
template <typename T>
void swiglu_forward_cuda(T* act, T* gate, const T* h, const T* u, int64_t n, CudaStream stream);
template <typename T>
void swiglu_backward_cuda(T* dh, T* du, const T* dact, const T* h, const T* u, int64_t n,
                          CudaStream stream);

}  // namespace muongpt
