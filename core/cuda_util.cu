// Small device helpers (see core/cuda_util.h). Elementwise kernels use grid-stride loops with
// 64-bit indices, so any n works with a bounded grid; reductions use a grid that depends only on
// n, never on the GPU, so their summation order (and result) is the same everywhere.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"

namespace muongpt {
namespace {

constexpr int kThreads = 256;            // elementwise kernels
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride loops cover the rest

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

void check_n(const char* what, int64_t n) {
  if (n < 0) fail("cuda_util", what, ": negative element count ", n);
}

// --- elementwise kernels ---------------------------------------------------------------------

__global__ void f32_to_bf16_kernel(uint16_t* __restrict__ dst, const float* __restrict__ src,
                                   int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    dst[i] = cuda::f32_to_bf16_bits(src[i]);
}

__global__ void bf16_to_f32_kernel(float* __restrict__ dst, const uint16_t* __restrict__ src,
                                   int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    dst[i] = __uint_as_float(static_cast<uint32_t>(src[i]) << 16);
}

__global__ void fill_kernel(float* x, float value, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    x[i] = value;
}

__global__ void scale_kernel(float* x, float a, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    x[i] = __fmul_rn(a, x[i]);
}

// x may alias y only exactly (x == y is fine: each element is read before it is written by the
// same thread).
__global__ void axpy_kernel(float* y, float a, const float* x, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    y[i] = __fmaf_rn(a, x[i], y[i]);
}

// --- sum of squares ------------------------------------------------------------------------

constexpr int kSumThreads = 256;    // power of two (tree reduction)
constexpr int kMaxPartials = 1024;  // blocks of the first pass

// Pass 1: block b sums x[i]² over i ≡ t (mod grid·256) for its 256 threads t, then reduces the
// 256 thread sums by a fixed tree. Squares of floats are exact in double (24 + 24 < 53 bits).
__global__ void __launch_bounds__(kSumThreads)
    sum_squares_partial_kernel(const float* __restrict__ x, int64_t n,
                               double* __restrict__ partial) {
  __shared__ double sh[kSumThreads];
  const int64_t step = static_cast<int64_t>(gridDim.x) * kSumThreads;
  double acc = 0.0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(kSumThreads) + threadIdx.x; i < n; i += step) {
    const double v = x[i];
    acc += v * v;
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kSumThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

// Pass 2 (one block): the `count` partial sums, strided over the threads, then a fixed tree.
__global__ void __launch_bounds__(kSumThreads)
    sum_partials_kernel(const double* __restrict__ partial, int count, double* __restrict__ out) {
  __shared__ double sh[kSumThreads];
  double acc = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < count; i += kSumThreads) acc += partial[i];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kSumThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

// Scratch for the partial sums, one buffer per (device, stream) so that reductions queued on
// different streams never share it. Allocated on first use and kept for the process (freeing at
// exit could run after the CUDA runtime has shut down). Layout: kMaxPartials partials, then one
// double for sum_squares_f32_sync's result.
double* partial_scratch(CudaStream stream) {
  static std::mutex mu;
  static auto* buffers = new std::map<std::pair<int, CudaStream>, double*>();
  int device = 0;
  MG_CUDA(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  double*& p = (*buffers)[{device, stream}];
  if (!p) MG_CUDA(cudaMalloc(&p, sizeof(double) * (kMaxPartials + 1)));
  return p;
}

// --- finiteness ------------------------------------------------------------------------------

__global__ void set_int_kernel(int* p, int value) {
  *p = value;
}

// Clears *flag when some element is NaN or ±inf (exponent bits all ones). Every thread reaches
// __syncthreads_or; the blocks that find one all store the same 0 (no read-modify-write).
__global__ void all_finite_kernel(const float* __restrict__ x, int64_t n, int* flag) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int bad = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += step)
    bad |= (__float_as_uint(x[i]) & 0x7f800000u) == 0x7f800000u;
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 0;
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

}  // namespace

void copy_to_device(void* dst_device, const void* src_host, size_t bytes, CudaStream stream) {
  if (bytes == 0) return;
  MG_CUDA(cudaMemcpyAsync(dst_device, src_host, bytes, cudaMemcpyHostToDevice, as_cuda(stream)));
}

void copy_to_host(void* dst_host, const void* src_device, size_t bytes, CudaStream stream) {
  if (bytes == 0) return;
  MG_CUDA(cudaMemcpyAsync(dst_host, src_device, bytes, cudaMemcpyDeviceToHost, as_cuda(stream)));
}

void copy_device(void* dst_device, const void* src_device, size_t bytes, CudaStream stream) {
  if (bytes == 0 || dst_device == src_device) return;
  MG_CUDA(
      cudaMemcpyAsync(dst_device, src_device, bytes, cudaMemcpyDeviceToDevice, as_cuda(stream)));
}

void stream_sync(CudaStream stream) {
  MG_CUDA(cudaStreamSynchronize(as_cuda(stream)));
}

void convert(void* dst, DType dst_type, const void* src, DType src_type, int64_t n,
             CudaStream stream) {
  check_n("convert", n);
  auto supported = [](DType t) { return t == DType::f32 || t == DType::bf16; };
  if (!supported(dst_type) || !supported(src_type))
    fail("cuda_util", "convert: only F32 and BF16 are supported (asked ", dtype_name(src_type),
         " -> ", dtype_name(dst_type), ")");
  if (n == 0) return;
  const size_t n_bytes_dst = static_cast<size_t>(n) * dtype_size(dst_type);
  const size_t n_bytes_src = static_cast<size_t>(n) * dtype_size(src_type);
  if (dst_type == src_type) {
    if (dst != src && overlap(dst, n_bytes_dst, src, n_bytes_src))
      fail("cuda_util", "convert: overlapping source and destination");
    copy_device(dst, src, n_bytes_dst, stream);
    return;
  }
  if (overlap(dst, n_bytes_dst, src, n_bytes_src))
    fail("cuda_util", "convert: ", dtype_name(src_type), " -> ", dtype_name(dst_type),
         " cannot run in place (source and destination overlap)");
  if (dst_type == DType::bf16) {
    f32_to_bf16_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(
        static_cast<uint16_t*>(dst), static_cast<const float*>(src), n);
  } else {
    bf16_to_f32_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(
        static_cast<float*>(dst), static_cast<const uint16_t*>(src), n);
  }
  MG_CUDA(cudaGetLastError());
}

void fill_f32(float* x, float value, int64_t n, CudaStream stream) {
  check_n("fill_f32", n);
  if (n == 0) return;
  fill_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(x, value, n);
  MG_CUDA(cudaGetLastError());
}

void scale_f32(float* x, float a, int64_t n, CudaStream stream) {
  check_n("scale_f32", n);
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(x, a, n);
  MG_CUDA(cudaGetLastError());
}

void axpy_f32(float* y, float a, const float* x, int64_t n, CudaStream stream) {
  check_n("axpy_f32", n);
  if (n == 0) return;
  if (x != y && overlap(x, sizeof(float) * size_t(n), y, sizeof(float) * size_t(n)))
    fail("cuda_util", "axpy_f32: x and y overlap without being the same array");
  axpy_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(y, a, x, n);
  MG_CUDA(cudaGetLastError());
}

void sum_squares_f32(const float* x, int64_t n, double* out_device, CudaStream stream) {
  check_n("sum_squares_f32", n);
  if (n == 0) {
    MG_CUDA(cudaMemsetAsync(out_device, 0, sizeof(double), as_cuda(stream)));  // +0.0
    return;
  }
  double* partial = partial_scratch(stream);
  // The grid depends on n only: at least 256·4 elements per block before a second block is
  // used, at most kMaxPartials blocks.
  const int blocks = static_cast<int>(
      std::clamp<int64_t>((n + kSumThreads * 4 - 1) / (kSumThreads * 4), 1, kMaxPartials));
  sum_squares_partial_kernel<<<blocks, kSumThreads, 0, as_cuda(stream)>>>(x, n, partial);
  MG_CUDA(cudaGetLastError());
  sum_partials_kernel<<<1, kSumThreads, 0, as_cuda(stream)>>>(partial, blocks, out_device);
  MG_CUDA(cudaGetLastError());
}

double sum_squares_f32_sync(const float* x, int64_t n, CudaStream stream) {
  double* out = partial_scratch(stream) + kMaxPartials;
  sum_squares_f32(x, n, out, stream);
  double host = 0.0;
  copy_to_host(&host, out, sizeof host, stream);
  stream_sync(stream);
  return host;
}

void all_finite_f32(const float* x, int64_t n, int* flag_device, CudaStream stream) {
  check_n("all_finite_f32", n);
  set_int_kernel<<<1, 1, 0, as_cuda(stream)>>>(flag_device, 1);
  MG_CUDA(cudaGetLastError());
  if (n == 0) return;
  all_finite_kernel<<<grid_for(n), kThreads, 0, as_cuda(stream)>>>(x, n, flag_device);
  MG_CUDA(cudaGetLastError());
}

}  // namespace muongpt
