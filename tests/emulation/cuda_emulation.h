// A host model of the CUDA primitives the fused attention kernels use, so that their source
// (model/ops/flash_attention_kernels.cuh, compiled with MUONGPT_CUDA_EMULATION) runs on the CPU;
// elementwise kernels (model/ops/swiglu_kernels.cuh) need only the thread indices and the loads
// and stores at the end of this file. The model:
//   - every thread of a block is a fiber (ucontext); blocks run one after another;
//   - __syncthreads() waits for every live thread of the block;
//   - the warp collectives (__shfl_xor_sync, ldmatrix .x4 [.trans], mma.sync m16n8k16 bf16 →
//     fp32) wait for the 32 lanes of the warp, then the last lane to arrive computes every
//     lane's result from the PTX ISA's fragment layouts (which lane holds which element);
//   - __nv_bfloat16 is a 16-bit storage type, rounded to nearest even (core/dtype.h) like
//     __floats2bfloat162_rn.
// It checks what the hardware would fault on or silently corrupt: ldmatrix row addresses outside
// the block's shared memory or not 16-byte aligned, and a barrier or collective that not every
// thread reaches (a deadlock is reported, not hung on).
//
// It is a model of the semantics, not of timing or of the memory system: races between threads
// are not detected (compute-sanitizer's racecheck does that on a GPU), and the fp32 accumulation
// order inside one mma is the emulation's own. Include it before the kernels' header.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/dtype.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {{muongpt::float_to_bf16(lo)}, {muongpt::float_to_bf16(hi)}};
}
struct uint4 {
  uint32_t x, y, z, w;
};
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) {
  return {x, y, z, w};
}
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace muongpt::emulation {

struct ThreadIds {
  dim3 thread, block, block_dim, grid_dim;  // threadIdx, blockIdx, blockDim, gridDim
};
const ThreadIds& self();  // the running thread's
uint4* dynamic_smem();    // the running block's dynamic shared memory
void syncthreads();
float shfl_xor(float v, int lane_mask);
// r[i] of lane l from the 8 × 8 matrix whose rows lanes 8i..8i+7 address (see ldmatrix).
void ldmatrix_x4(uint32_t r[4], const void* row_address, bool trans);
void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]);

// Runs `body` (the kernel call) once per thread of grid × block, with `smem_bytes` of dynamic
// shared memory per block (filled with 0xff: a read of something never written shows up).
// Errors (a deadlock, a bad ldmatrix address, an exception in a thread) are thrown as Error.
void launch(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body);

}  // namespace muongpt::emulation

#define threadIdx (::muongpt::emulation::self().thread)
#define blockIdx (::muongpt::emulation::self().block)
#define blockDim (::muongpt::emulation::self().block_dim)
#define gridDim (::muongpt::emulation::self().grid_dim)

inline void __syncthreads() {
  muongpt::emulation::syncthreads();
}
inline float __shfl_xor_sync(unsigned /*mask*/, float v, int lane_mask) {
  return muongpt::emulation::shfl_xor(v, lane_mask);
}

namespace muongpt {
using std::min;
namespace ops_cuda {  // what the kernels take from model/ops/ops_cuda.cuh
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
inline float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
}
inline float to_f32(__nv_bfloat16 x) {
  return bf16_to_float(x.bits);
}
// The loads and stores of core/cuda_util.h for the elementwise kernels
// (model/ops/swiglu_kernels.cuh): stores round to nearest even, like float_to_bf16.
inline float to_f32(float x) {
  return x;
}
template <typename T>
T from_f32(float x);
template <>
inline float from_f32<float>(float x) {
  return x;
}
template <>
inline __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return {float_to_bf16(x)};
}
}  // namespace ops_cuda
}  // namespace muongpt
