// ReLU² on the GPU: elementwise grid-stride loops over relu2.h's per-element math.
#include "model/ops/ops_cuda.cuh"
#include "model/ops/relu2.h"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void relu2_forward_kernel(T* out, const T* h, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(relu2(to_f32(h[i])));
}

template <typename T>
__global__ void relu2_backward_kernel(T* dh, const T* dout, const T* h, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dh[i] = from_f32<T>(to_f32(dout[i]) * relu2_grad(to_f32(h[i])));
}

}  // namespace

template <typename T>
void relu2_forward_cuda(T* out, const T* h, int64_t n, CudaStream stream) {
  if (n < 0) fail("relu2_forward_cuda", "negative size ", n);
  if (n == 0) return;
  relu2_forward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(out, h, n);
  MG_CUDA_LAUNCH("relu2_forward_kernel");
}

template <typename T>
void relu2_backward_cuda(T* dh, const T* dout, const T* h, int64_t n, CudaStream stream) {
  if (n < 0) fail("relu2_backward_cuda", "negative size ", n);
  if (n == 0) return;
  relu2_backward_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(dh, dout, h, n);
  MG_CUDA_LAUNCH("relu2_backward_kernel");
}

#define MG_INSTANTIATE(T)                                                 \
  template void relu2_forward_cuda<T>(T*, const T*, int64_t, CudaStream); \
  template void relu2_backward_cuda<T>(T*, const T*, const T*, int64_t, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
