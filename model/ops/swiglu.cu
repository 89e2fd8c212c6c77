// SwiGLU on the GPU: the launchers of model/ops/swiglu.h; the kernels are in
// model/ops/swiglu_kernels.cuh (shared with the host emulation test).
#include "model/ops/swiglu.h"
#include "model/ops/swiglu_kernels.cuh"

namespace muongpt {

template <typename T>
void swiglu_forward_cuda(T* act, T* gate, const T* h, const T* u, int64_t n, CudaStream stream) {
  if (n < 0) fail("swiglu_forward_cuda", "negative size ", n);
  if (n == 0) return;
  swiglu_forward_kernel<T>
      <<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(act, gate, h, u, n);
  MG_CUDA_LAUNCH("swiglu_forward_kernel");
}

template <typename T>
void swiglu_backward_cuda(T* dh, T* du, const T* dact, const T* h, const T* u, int64_t n,
                          CudaStream stream) {
  if (n < 0) fail("swiglu_backward_cuda", "negative size ", n);
  if (n == 0) return;
  swiglu_backward_kernel<T>
      <<<grid_for(n, kSwigluThreads), kSwigluThreads, 0, stream>>>(dh, du, dact, h, u, n);
  MG_CUDA_LAUNCH("swiglu_backward_kernel");
}

#define MG_INSTANTIATE(T)                                                                \
  template void swiglu_forward_cuda<T>(T*, T*, const T*, const T*, int64_t, CudaStream); \
  template void swiglu_backward_cuda<T>(T*, T*, const T*, const T*, const T*, int64_t, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
