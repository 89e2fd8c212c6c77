// The SwiGLU kernels (model/ops/swiglu.h), in a header so that the same source also compiles on
// the host against tests/emulation/cuda_emulation.h (with MUONGPT_CUDA_EMULATION defined), where
// tests/emulation/test_swiglu_emulated.cpp runs them in every CI build. Included by
// model/ops/swiglu.cu and that test only.
//
// Grid-stride loops over the n elements, each thread evaluating swiglu.h's per-element math in
// fp32 on values loaded from T and rounding each stored value to T once.
#pragma once

#include <cstdint>

#ifndef MUONGPT_CUDA_EMULATION
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/ops/ops_cuda.cuh"
#endif
#include "model/ops/swiglu.h"

namespace muongpt {
namespace {  // internal linkage: each including file (the .cu, the emulation test) has its own

using namespace ops_cuda;

constexpr int kSwigluThreads = 256;

template <typename T>
__global__ void swiglu_forward_kernel(T* act, T* gate, const T* h, const T* u, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = silu(to_f32(h[i]));
    gate[i] = from_f32<T>(g);
    act[i] = from_f32<T>(g * to_f32(u[i]));  // from the fp32 gate, as the CPU's gate·u
  }
}

// dh may alias dact: each thread reads its element of dact before writing dh.
template <typename T>
__global__ void swiglu_backward_kernel(T* dh, T* du, const T* dact, const T* h, const T* u,
                                       int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = to_f32(dact[i]), hi = to_f32(h[i]);
    du[i] = from_f32<T>(swiglu_grad_u(g, hi));
    dh[i] = from_f32<T>(swiglu_grad_h(g, hi, to_f32(u[i])));
  }
}

}  // namespace
}  // namespace muongpt
