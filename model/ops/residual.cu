// Residual add on the GPU: x ← x + y, one fp32 add and one rounding per element.
#include "model/ops/ops_cuda.cuh"
#include "model/ops/residual.h"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void residual_add_kernel(T* x, const T* y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = from_f32<T>(residual_add_element(to_f32(x[i]), to_f32(y[i])));
}

}  // namespace

template <typename T>
void residual_add_cuda(T* x, const T* y, int64_t n, CudaStream stream) {
  if (n < 0) fail("residual_add_cuda", "negative size ", n);
  if (n == 0) return;
  residual_add_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
  MG_CUDA_LAUNCH("residual_add_kernel");
}

template void residual_add_cuda<float>(float*, const float*, int64_t, CudaStream);
template void residual_add_cuda<__nv_bfloat16>(__nv_bfloat16*, const __nv_bfloat16*, int64_t,
                                               CudaStream);

}  // namespace muongpt
