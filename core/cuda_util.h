// Small device helpers: copies, dtype conversion, fills and BLAS-1 updates on fp32 buffers, a
// deterministic sum of squares and a finiteness check. Every call is asynchronous on `stream`
// (a cudaStream_t; nullptr is the legacy default stream) and takes device pointers unless it says
// otherwise. n counts elements, bytes count bytes; n = 0 / bytes = 0 does nothing (but still
// writes the result of a reduction).
//
// This header compiles in every build: the declarations below need no CUDA headers, and the
// implementations live only in core/cuda_util.cu (built when CUDA is). The device-side inline
// helpers at the end are visible only to nvcc.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace muongpt {

// cudaMemcpyAsync host → device, device → host, device → device. The host buffer must stay alive
// (and unmodified, for copy_to_device) until the stream has passed the copy; with pageable host
// memory the runtime may finish the copy before returning, with pinned memory it does not.
void copy_to_device(void* dst_device, const void* src_host, size_t bytes, CudaStream stream);
void copy_to_host(void* dst_host, const void* src_device, size_t bytes, CudaStream stream);
void copy_device(void* dst_device, const void* src_device, size_t bytes, CudaStream stream);
// Blocks the host until everything queued on `stream` has finished.
void stream_sync(CudaStream stream);

// dst[i] = src[i] converted, i < n, between DType::f32 and DType::bf16 (the same type is a plain
// copy). f32 → bf16 rounds to nearest even exactly like float_to_bf16() in core/dtype.h, bit for
// bit: NaN stays NaN (quiet bit set, sign and top payload bits kept), overflow rounds to ±inf,
// denormals are rounded, not flushed. bf16 → f32 is exact. dst and src must not overlap unless
// they are the same pointer and the types are equal (then it does nothing).
void convert(void* dst, DType dst_type, const void* src, DType src_type, int64_t n,
             CudaStream stream);

// x[i] = value.
void fill_f32(float* x, float value, int64_t n, CudaStream stream);
// x[i] = a · x[i] (one fp32 rounding, bit-identical to the same product on the CPU).
void scale_f32(float* x, float a, int64_t n, CudaStream stream);
// y[i] = fma(a, x[i], y[i]): one rounding (bit-identical to std::fma(a, x, y) on the CPU, not
// to a·x + y computed in two roundings).
void axpy_f32(float* y, float a, const float* x, int64_t n, CudaStream stream);

// *out_device = Σ x[i]² accumulated in double: each square is exact in double, the sum runs in a
// fixed order that depends only on n (fixed grid, per-thread strided sums, then shared-memory
// trees; no atomics), so the result is bit-identical from run to run and across GPUs. Two
// launches; the partial sums live in a small per-(device, stream) scratch buffer allocated on the
// first call for that stream (so the first call must not be inside a stream capture).
void sum_squares_f32(const float* x, int64_t n, double* out_device, CudaStream stream);
// The same, returned to the host (synchronises the stream).
double sum_squares_f32_sync(const float* x, int64_t n, CudaStream stream);

// *flag_device = 1 when every x[i] is finite (no NaN, no ±inf), else 0. n = 0 gives 1.
void all_finite_f32(const float* x, int64_t n, int* flag_device, CudaStream stream);

}  // namespace muongpt

#if defined(__CUDACC__)
#include <cuda_bf16.h>

// Device-side conversions between the storage types (float, __nv_bfloat16) and fp32 arithmetic.
namespace muongpt::cuda {

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);  // exact
}

// float_to_bf16() of core/dtype.h on the device, bit for bit (round to nearest even on the bit
// pattern; NaN keeps its sign and top payload bits and gets the quiet bit). __float2bfloat16
// rounds the same way except that it returns a canonical NaN.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __ushort_as_bfloat16(f32_to_bf16_bits(x));
}

}  // namespace muongpt::cuda
#endif
