// CUDA error checks that name the call, the file and the line.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/device.h"
#include "core/error.h"

namespace muongpt {
// The runtime API's name for our stream handle (CudaStream is CUstream_st*, as cudaStream_t).
inline cudaStream_t as_cuda(CudaStream s) {
  return static_cast<cudaStream_t>(s);
}
}  // namespace muongpt

#define MG_CUDA(call)                                                                     \
  do {                                                                                    \
    cudaError_t mg_err_ = (call);                                                         \
    if (mg_err_ != cudaSuccess)                                                           \
      ::muongpt::fail("cuda", #call, " failed at ", __FILE__, ":", __LINE__, ": ",        \
                      cudaGetErrorName(mg_err_), " (", cudaGetErrorString(mg_err_), ")"); \
  } while (0)
