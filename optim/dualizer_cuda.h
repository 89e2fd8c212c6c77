// The dualizers on the GPU, for a batch of same-shape matrices (the unit Muon groups its matrices
// in): out[b] = dualize(X[b]) for b < count, with the math of optim/dualizer.cpp.
//
//   ns          Newton–Schulz, batched over the group with strided GEMMs (gemm_cuda). The working
//               matrix Y is stored in bf16 (NsPrecision::bf16, training) or fp32 (fp32, the
//               debugging mode); every GEMM accumulates in fp32, and the elementwise steps compute
//               in fp32 and round once when they store. Per step, with Y [m, n]:
//                 A = Y Yᵀ [m, m] (m ≤ n) or Yᵀ Y [n, n] (m > n)       fp32 out
//                 B = b·A + c·A·A                                       fp32 out (A·A from A in Y's
//                                                                       type)
//                 Y ← a·Y + B·Y (m ≤ n) or a·Y + Y·B (m > n)             product in fp32, sum in
//                                                                       fp32, stored in Y's type
//               i.e. the CPU's "transpose when rows > cols" done by multiplying on the right (the
//               Gram matrix is always the smaller one; no transposes are materialised). The
//               normalisation Y = X / (c·‖X‖_F + eps) takes ‖X‖_F from a deterministic double sum.
//   polar,      exact, per matrix: the smaller Gram matrix in double (cublasDgemm on X converted
//   schatten-p  to double), cusolverDnDsyevd, the coefficients h(σ)/σ of optim/dualizer_math.h
//               on the device, W = U diag(coef) Uᵀ and T = W X (or X W) by cublasDgemm, rounded to
//               float once. Same null-space threshold as the CPU.
//   sign,       elementwise kernels (Frobenius with a deterministic double norm).
//   frobenius
//
// Nothing is allocated in dualize_batch(): the caller passes a device workspace of
// workspace_bytes() (optim/optimizer_cuda.cpp carves it from its single allocation). The cuBLAS
// and cuSOLVER handles are made once, in the constructor, and bound to the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/device.h"
#include "optim/dualizer.h"

struct cublasContext;      // cublasHandle_t
struct cusolverDnContext;  // cusolverDnHandle_t

namespace muongpt {

// Storage of Newton–Schulz's working matrices (accumulation is fp32 either way).
enum class NsPrecision { bf16, fp32 };
std::string_view ns_precision_name(NsPrecision p);  // "bf16" | "fp32"

// Deterministic sums of squares on the device, for norms: each segment is cut into a number of
// chunks that depends only on its length, each chunk is summed in double by one block in a fixed
// order (per-thread strided sums, then a fixed tree), and the chunk sums are added in order by
// one thread. No atomics: the result is bit-identical from run to run.
struct SquaresSegment {
  const float* x;  // device
  int64_t n;
};
constexpr int kSquaresMaxChunks = 64;
// sums[s] = Σ_i segs[s].x[i]², s < count. `segs` is a device array; `partials` a device scratch
// of count·kSquaresMaxChunks doubles; `sums` device memory. count ≤ 65535.
void sum_squares_segments(const SquaresSegment* segs, int64_t count, double* partials, double* sums,
                          CudaStream stream);
// The same for `count` segments x + s·stride of n elements each.
void sum_squares_strided(const float* x, int64_t count, int64_t n, int64_t stride, double* partials,
                         double* sums, CudaStream stream);

class CudaDualizer {
 public:
  // Creates the cuBLAS and cuSOLVER handles (on the current device) and binds them to `stream`.
  explicit CudaDualizer(CudaStream stream);
  ~CudaDualizer();
  CudaDualizer(const CudaDualizer&) = delete;
  CudaDualizer& operator=(const CudaDualizer&) = delete;

  CudaStream stream() const { return stream_; }

  // Device workspace (bytes) that dualize_batch() needs for `count` [m, n] matrices.
  size_t workspace_bytes(const DualizerSpec& spec, int64_t count, int64_t m, int64_t n,
                         NsPrecision precision) const;

  // out[b] = dualize(X[b]), b < count; X and out are [count, m, n] fp32 row-major device
  // matrices, contiguous. X is used as scratch (its contents are destroyed); out may equal X.
  // `workspace` is device memory of ws_bytes ≥ workspace_bytes(), 256-byte aligned.
  // Asynchronous on the stream, except that the exact dualizers wait for the eigensolver's status
  // (one synchronisation per call) and fail if it did not converge.
  void dualize_batch(const DualizerSpec& spec, float* X, float* out, int64_t count, int64_t m,
                     int64_t n, NsPrecision precision, void* workspace, size_t ws_bytes) const;

 private:
  CudaStream stream_;
  cublasContext* blas_ = nullptr;
  cusolverDnContext* solver_ = nullptr;
};

}  // namespace muongpt
