// cuBLAS / cuBLASLt and cuSOLVER status checks that name the call, the file and the line, like
// MG_CUDA in core/cuda_check.h. Header-only: including it needs the CUDA include path but links
// nothing beyond cuBLAS (cublasGetStatusName); the cuSOLVER names are spelled out here so that a
// target that only uses the status type does not have to link libcusolver.
#pragma once

#include <cublas_v2.h>
#include <cusolver_common.h>

#include "core/error.h"

namespace muongpt::detail {

inline const char* cusolver_status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS:
      return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR:
      return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT:
      return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE:
      return "CUSOLVER_STATUS_INVALID_LICENSE";
    default:
      return "CUSOLVER_STATUS_(other)";
  }
}

}  // namespace muongpt::detail

// MG_CUBLAS(cublasLtMatmul(...)): any call returning cublasStatus_t (cuBLAS and cuBLASLt).
#define MG_CUBLAS(call)                                                                       \
  do {                                                                                        \
    cublasStatus_t mg_st_ = (call);                                                           \
    if (mg_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
      ::muongpt::fail("cublas", #call, " failed at ", __FILE__, ":", __LINE__, ": ",          \
                      cublasGetStatusName(mg_st_), " (", cublasGetStatusString(mg_st_), ")"); \
  } while (0)

// MG_CUSOLVER(cusolverDnDsyevd(...)): any call returning cusolverStatus_t. Note that a solver's
// numerical failure (e.g. syevd not converging) is reported through its devInfo output, which the
// caller must check separately; this macro only catches API errors.
#define MG_CUSOLVER(call)                                                                        \
  do {                                                                                           \
    cusolverStatus_t mg_st_ = (call);                                                            \
    if (mg_st_ != CUSOLVER_STATUS_SUCCESS)                                                       \
      ::muongpt::fail("cusolver", #call, " failed at ", __FILE__, ":", __LINE__, ": ",           \
                      ::muongpt::detail::cusolver_status_name(mg_st_), " (status ", int(mg_st_), \
                      ")");                                                                      \
  } while (0)
