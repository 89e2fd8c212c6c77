// gemm_cuda (core/gemm_cuda.h) through cuBLASLt.
//
// Row-major trick: a row-major X [r, c] with row stride ld is, byte for byte, the column-major
// matrix Xᵀ [c, r] with leading dimension ld. So the row-major product C = op(A)·op(B) is the
// column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ, where cuBLAS sees our B as its first operand (with
// our trans_b as its transa) and our A as its second (our trans_a as its transb):
//   cuBLAS "A" = B: column-major [N, K] (stored [K, N] row-major) or, when trans_b, [K, N]
//   cuBLAS "B" = A: column-major [K, M] (stored [M, K] row-major) or, when trans_a, [M, K]
//   cuBLAS "C" = "D" = C: column-major [N, M], leading dimension ldc.
//
// Plans (matmul descriptor, three layouts, the heuristic's algorithm) are cached per key for the
// life of the process and never freed (the process exits with them; freeing them from a static
// destructor could run after the CUDA runtime has shut down). Workspaces are one per (device,
// stream), so products queued on different streams never share scratch memory.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <compare>
#include <cstdint>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>

#include "core/cublas_check.h"
#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"
#include "core/gemm_cuda.h"

namespace muongpt {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // 32 MiB per (device, stream)

cudaDataType_t cuda_type(DType t) {
  return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;  // only F32 and BF16 get this far
}

// The largest power of two (at most 256) that divides the address of every matrix of the batch:
// the base pointer and, when there is more than one product, the batch stride in bytes. The
// heuristic assumes 256-byte alignment unless told otherwise, and an algorithm picked under that
// assumption may fail or fault on a less aligned pointer (offset views: heads, row slices).
uint32_t alignment(const void* p, int64_t stride, size_t elem, int64_t count) {
  auto bits = reinterpret_cast<uintptr_t>(p);
  if (count > 1) bits |= static_cast<uintptr_t>(stride) * elem;
  uint32_t a = 256;
  while (a > 1 && bits % a != 0) a >>= 1;
  return a;
}

struct PlanKey {
  int device;
  bool trans_a, trans_b;
  int64_t M, N, K, lda, ldb, ldc;
  DType ab_type, c_type;
  int64_t count, stride_a, stride_b, stride_c;  // strides 0 when count == 1
  bool beta_zero;
  uint32_t align_a, align_b, align_c;
  auto operator<=>(const PlanKey&) const = default;
};

std::string describe(const PlanKey& k) {
  std::ostringstream os;
  os << (k.trans_a ? "Aᵀ" : "A") << "·" << (k.trans_b ? "Bᵀ" : "B") << " M=" << k.M << " N=" << k.N
     << " K=" << k.K << " lda=" << k.lda << " ldb=" << k.ldb << " ldc=" << k.ldc << " A/B "
     << dtype_name(k.ab_type) << " C " << dtype_name(k.c_type);
  if (k.count > 1)
    os << " batch " << k.count << " strides " << k.stride_a << "/" << k.stride_b << "/"
       << k.stride_c;
  os << " alignment " << k.align_a << "/" << k.align_b << "/" << k.align_c << " bytes";
  return os.str();
}

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // ours, in column-major form
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;  // what the algorithm needs (at most kWorkspaceBytes)

  void destroy() {
    if (op) cublasLtMatmulDescDestroy(op);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    op = nullptr, a = b = c = nullptr;
  }
};

template <typename V>
void set_layout(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr, V value) {
  MG_CUBLAS(cublasLtMatrixLayoutSetAttribute(layout, attr, &value, sizeof value));
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld,
                                   int64_t count, int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  MG_CUBLAS(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                       static_cast<uint64_t>(cols), ld));
  if (count > 1) {
    set_layout(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<int32_t>(count));
    set_layout(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, stride);
  }
  return layout;
}

Plan make_plan(cublasLtHandle_t handle, const PlanKey& k) {
  Plan p;
  cublasLtMatmulPreference_t pref = nullptr;
  try {
    const cudaDataType_t ab = cuda_type(k.ab_type), c = cuda_type(k.c_type);
    // fp32 compute and fp32 scale type: CUBLAS_COMPUTE_32F (not _FAST_TF32) keeps fp32 inputs at
    // full precision, and accumulates bf16 products in fp32.
    MG_CUBLAS(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_first = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // our B
    const cublasOperation_t op_second = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // our A
    MG_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                             sizeof op_first));
    MG_CUBLAS(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                             sizeof op_second));
    // Column-major shapes of the stored matrices: rows = the row-major row width.
    p.b = make_layout(ab, k.trans_b ? k.K : k.N, k.trans_b ? k.N : k.K, k.ldb, k.count, k.stride_b);
    p.a = make_layout(ab, k.trans_a ? k.M : k.K, k.trans_a ? k.K : k.M, k.lda, k.count, k.stride_a);
    p.c = make_layout(c, k.N, k.M, k.ldc, k.count, k.stride_c);

    MG_CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspaceBytes;
    MG_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                   &ws, sizeof ws));
    // cuBLAS's A is our B and vice versa; C and D are the same buffer.
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.align_c}};
    for (const auto& [attr, value] : aligns)
      MG_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value));
    // Split-K: allow only algorithms whose partial sums are kept in the compute type (fp32) and
    // reduced in a separate, fixed-order step. The OUTPUT_TYPE and INPLACE schemes would round
    // every partial sum to a bf16 C (not once, as documented), and INPLACE accumulates into the
    // output buffer, whose ordering we do not want to depend on for bit-identical reruns.
    // Algorithms without split-K (scheme NONE) pass any mask.
    const uint32_t reduction_mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    MG_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                   &reduction_mask, sizeof reduction_mask));

    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.b, p.a, p.c, p.c, pref, 1, &result, &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0 || result.state != CUBLAS_STATUS_SUCCESS)
      fail("gemm_cuda", "cuBLASLt has no algorithm for ", describe(k), " (",
           cublasGetStatusName(st != CUBLAS_STATUS_SUCCESS ? st : result.state), ")");
    if (result.workspaceSize > kWorkspaceBytes)
      fail("gemm_cuda", "cuBLASLt algorithm for ", describe(k), " wants ", result.workspaceSize,
           " bytes of workspace, more than the ", kWorkspaceBytes, " allowed");
    p.algo = result.algo;
    p.workspace = result.workspaceSize;
    MG_CUBLAS(cublasLtMatmulPreferenceDestroy(pref));
    pref = nullptr;
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    p.destroy();
    throw;
  }
  return p;
}

// Process-wide state: one cuBLASLt handle per device, workspaces per (device, stream), plans.
// Never destroyed (see the top of the file).
struct State {
  std::mutex mu;
  std::map<int, cublasLtHandle_t> handles;
  std::map<std::pair<int, CudaStream>, void*> workspaces;
  std::map<PlanKey, Plan> plans;  // node-based: a Plan's address is stable once inserted
};

State& state() {
  static auto* s = new State();
  return *s;
}

struct Resolved {
  cublasLtHandle_t handle;
  const Plan* plan;
  void* workspace;
};

Resolved resolve(const PlanKey& key, CudaStream stream) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  cublasLtHandle_t& handle = s.handles[key.device];
  if (!handle) MG_CUBLAS(cublasLtCreate(&handle));
  void*& ws = s.workspaces[{key.device, stream}];
  if (!ws) MG_CUDA(cudaMalloc(&ws, kWorkspaceBytes));
  auto it = s.plans.find(key);
  if (it == s.plans.end()) it = s.plans.emplace(key, make_plan(handle, key)).first;
  return {handle, &it->second, ws};
}

// C ← beta·C for a product whose A·B term vanishes (K = 0 or alpha = 0); beta = 0 writes zeros
// without reading C, like the cuBLAS path. [count][M rows of N, row stride ldc].
template <typename T>
__global__ void scale_c_kernel(T* C, int64_t M, int64_t N, int64_t ldc, int64_t stride_c,
                               int64_t count, float beta) {
  const int64_t total = count * M * N;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += step) {
    const int64_t j = idx % N, i = (idx / N) % M, b = idx / (N * M);
    T* c = C + b * stride_c + i * ldc + j;
    *c = cuda::from_f32<T>(beta == 0.0f ? 0.0f : beta * cuda::to_f32(*c));
  }
}

void scale_c(CudaStream stream, int64_t M, int64_t N, void* C, int64_t ldc, DType c_type,
             int64_t count, int64_t stride_c, float beta) {
  constexpr int kThreads = 256;
  const int64_t total = count * M * N;
  const auto blocks =
      static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 16));
  auto s = static_cast<cudaStream_t>(stream);
  if (c_type == DType::bf16)
    scale_c_kernel<<<blocks, kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(C), M, N, ldc, stride_c,
                                               count, beta);
  else
    scale_c_kernel<<<blocks, kThreads, 0, s>>>(static_cast<float*>(C), M, N, ldc, stride_c, count,
                                               beta);
  MG_CUDA(cudaGetLastError());
}

}  // namespace

void gemm_cuda(CudaStream stream, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
               float alpha, const void* A, int64_t lda, const void* B, int64_t ldb, float beta,
               void* C, int64_t ldc, DType ab_type, DType c_type, const GemmBatch& batch) {
  // --- arguments (checked before touching the device) ---
  const bool types_ok = (ab_type == DType::f32 && c_type == DType::f32) ||
                        (ab_type == DType::bf16 && (c_type == DType::bf16 || c_type == DType::f32));
  if (!types_ok)
    fail("gemm_cuda", "unsupported types: A/B ", dtype_name(ab_type), ", C ", dtype_name(c_type),
         " (supported: F32·F32→F32, BF16·BF16→BF16, BF16·BF16→F32)");
  if (M < 0 || N < 0 || K < 0 || batch.count < 0)
    fail("gemm_cuda", "negative size: M=", M, " N=", N, " K=", K, " batch count ", batch.count);
  if (M == 0 || N == 0 || batch.count == 0) return;  // nothing to write
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  if (M > kIntMax || N > kIntMax || K > kIntMax || batch.count > kIntMax)
    fail("gemm_cuda", "size beyond the 32-bit range: M=", M, " N=", N, " K=", K, " batch count ",
         batch.count);
  if (ldc < N) fail("gemm_cuda", "ldc ", ldc, " is smaller than N ", N);
  if (!C) fail("gemm_cuda", "C is null");
  const bool product = K > 0 && alpha != 0.0f;
  if (product) {
    const int64_t width_a = trans_a ? M : K, width_b = trans_b ? K : N;
    if (lda < width_a) fail("gemm_cuda", "lda ", lda, " is smaller than op(A)'s row ", width_a);
    if (ldb < width_b) fail("gemm_cuda", "ldb ", ldb, " is smaller than op(B)'s row ", width_b);
    if (!A || !B) fail("gemm_cuda", "A or B is null");
  }
  const int64_t count = batch.count;
  if (count > 1) {
    if (batch.stride_a < 0 || batch.stride_b < 0)
      fail("gemm_cuda", "negative batch stride: ", batch.stride_a, "/", batch.stride_b);
    if (batch.stride_c <= 0)
      fail("gemm_cuda", "batch stride of C must be positive (", batch.stride_c,
           "): the products would write the same matrix");
  }

  // --- K = 0 or alpha = 0: C = beta·C, like gemm() ---
  if (!product) {
    scale_c(stream, M, N, C, ldc, c_type, count, count > 1 ? batch.stride_c : 0, beta);
    return;
  }

  PlanKey key{};
  MG_CUDA(cudaGetDevice(&key.device));
  key.trans_a = trans_a, key.trans_b = trans_b;
  key.M = M, key.N = N, key.K = K, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
  key.ab_type = ab_type, key.c_type = c_type;
  key.count = count;
  key.stride_a = count > 1 ? batch.stride_a : 0;
  key.stride_b = count > 1 ? batch.stride_b : 0;
  key.stride_c = count > 1 ? batch.stride_c : 0;
  key.beta_zero = beta == 0.0f;
  key.align_a = alignment(A, key.stride_a, dtype_size(ab_type), count);
  key.align_b = alignment(B, key.stride_b, dtype_size(ab_type), count);
  key.align_c = alignment(C, key.stride_c, dtype_size(c_type), count);

  const Resolved r = resolve(key, stream);
  // beta = 0: cuBLASLt does not read C, so garbage (NaN) in C does not leak into the result.
  MG_CUBLAS(cublasLtMatmul(r.handle, r.plan->op, &alpha, B, r.plan->b, A, r.plan->a, &beta, C,
                           r.plan->c, C, r.plan->c, &r.plan->algo, r.workspace, kWorkspaceBytes,
                           static_cast<cudaStream_t>(stream)));
}

}  // namespace muongpt
