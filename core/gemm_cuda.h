// Matrix multiply on the GPU through cuBLASLt, with the same row-major convention as gemm():
//   C[M, N] = alpha · op(A) · op(B) + beta · C     (op(X) = X or Xᵀ; ld* are row strides)
// A and B share one element type (F32 or BF16); C is F32 or BF16; accumulation is always fp32
// (CUBLAS_COMPUTE_32F: no TF32 shortcut, so the fp32 path is a faithful debugging reference).
// `batch` runs `count` independent products whose operands sit `stride_*` elements apart
// (stride 0 = the same matrix for every product). All pointers are device memory; the call is
// asynchronous on `stream`.
//
// One wrapper serves the model, Newton–Schulz and telemetry. Matrix layouts, the heuristic's
// algorithm choice and the descriptors are cached per (shape, types, batch) key, and the
// workspace is allocated once, on the first call: nothing is allocated in a steady-state step.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/dtype.h"

namespace muongpt {

struct GemmBatch {
  int64_t count = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // elements
};

void gemm_cuda(CudaStream stream, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, const void* A, int64_t lda, const void* B, int64_t ldb, float beta,
               void* C, int64_t ldc, DType ab_type, DType c_type, const GemmBatch& batch = {});

}  // namespace muongpt
