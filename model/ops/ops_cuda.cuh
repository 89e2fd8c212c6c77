// Device-side helpers shared by the op kernels (model/ops/*.cu only; never included by host code).
// Storage type T is float or __nv_bfloat16; every kernel loads T, computes in fp32 and rounds once
// when it stores T (round to nearest even, like float_to_bf16 in core/dtype.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/dtype.h"
#include "core/error.h"

namespace muongpt::ops_cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Loads and stores of the storage type: the conversions of core/cuda_util.h (stores round to
// nearest even, bit for bit like float_to_bf16).
using cuda::from_f32;
using cuda::to_f32;

// The gemm_cuda element type of storage type T.
template <typename T>
constexpr DType storage_dtype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>,
                "GPU storage is float or __nv_bfloat16");
  return std::is_same_v<T, float> ? DType::f32 : DType::bf16;
}

// Butterfly reductions over the 32 lanes of a warp; every lane must take part (callers keep whole
// warps together: a warp's row index is the same on all its lanes). Every lane ends with the same
// bits: at each level lane i computes v_i ∘ v_j and lane j computes v_j ∘ v_i, and fp32 addition
// and max are commutative.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, off));
  return v;
}

// Blocks for a grid-stride loop over n items, capped (the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads, int64_t cap = int64_t(1) << 16) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks > cap) blocks = cap;
  return unsigned(blocks < 1 ? 1 : blocks);
}

// Checks a kernel launch (bad configuration, missing kernel image) right where it happened, naming
// the kernel, the file and the line. Errors inside the kernel surface at the next synchronising
// call.
#define MG_CUDA_LAUNCH(kernel_name)                                                              \
  do {                                                                                           \
    cudaError_t mg_err_ = cudaGetLastError();                                                    \
    if (mg_err_ != cudaSuccess)                                                                  \
      ::muongpt::fail("cuda", "launch of ", kernel_name, " failed at ", __FILE__, ":", __LINE__, \
                      ": ", cudaGetErrorName(mg_err_), " (", cudaGetErrorString(mg_err_), ")");  \
  } while (0)

}  // namespace muongpt::ops_cuda
