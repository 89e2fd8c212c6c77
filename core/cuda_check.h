// CUDA error checks that name the call, the file and the line.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

#define MG_CUDA(call)                                                                     \
  do {                                                                                    \
    cudaError_t mg_err_ = (call);                                                         \
    if (mg_err_ != cudaSuccess)                                                           \
      ::muongpt::fail("cuda", #call, " failed at ", __FILE__, ":", __LINE__, ": ",        \
                      cudaGetErrorName(mg_err_), " (", cudaGetErrorString(mg_err_), ")"); \
  } while (0)
