// The dualizers on the GPU (see optim/dualizer_cuda.h). Elementwise kernels use grid-stride loops
// with 64-bit indices; reductions use grids that depend only on the sizes, so their summation
// order (and result) is fixed. This file is compiled with -fmad=false (CMakeLists.txt): the
// shared scalar math of optim/dualizer_math.h rounds exactly as on the CPU.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cublas_check.h"
#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"
#include "core/gemm_cuda.h"
#include "optim/dualizer_cuda.h"
#include "optim/dualizer_math.h"

namespace muongpt {

namespace {

constexpr int kThreads = 256;                   // every kernel here; a multiple of 32
constexpr int64_t kMaxBlocks = 1 << 16;         // elementwise grid-stride loops cover the rest
constexpr int64_t kChunkElems = 16 * kThreads;  // sum of squares: elements per chunk (at least)
constexpr size_t kAlign = 256;
constexpr int64_t kIntMax = 2147483647;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

#define MG_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// --- deterministic block reduction -------------------------------------------------------------

// The sum of v over the kThreads threads of the block, valid in thread 0. Every thread of the
// block must call it (it synchronises), and at most once per kernel (it owns its shared array).
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = 0;
  if (warp == 0) {  // the whole warp 0 takes part in the shuffles
    v = lane < kThreads / 32 ? warp_sums[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;
}

// --- sums of squares ---------------------------------------------------------------------------

// Chunks of a segment of n elements: ceil(n / kChunkElems), in [1, kSquaresMaxChunks].
__host__ __device__ int squares_chunks(int64_t n) {
  const int64_t c = (n + kChunkElems - 1) / kChunkElems;
  return static_cast<int>(c < 1 ? 1 : (c > kSquaresMaxChunks ? kSquaresMaxChunks : c));
}

struct SegmentArray {
  const SquaresSegment* segs;
  __device__ SquaresSegment operator()(int64_t s) const { return segs[s]; }
};
struct SegmentStrided {
  const float* x;
  int64_t n, stride;
  __device__ SquaresSegment operator()(int64_t s) const { return {x + s * stride, n}; }
};

// grid (kSquaresMaxChunks, count): block (c, s) sums chunk c of segment s, elements
// [c·per, min(n, (c+1)·per)) with per = ceil(n / chunks), into partials[s·kSquaresMaxChunks + c].
// Blocks past the segment's chunk count leave at once (the whole block: no barrier is skipped).
template <typename Segs>
__global__ void __launch_bounds__(kThreads) squares_partial_kernel(Segs segs, double* partials) {
  const int64_t s = blockIdx.y;
  const SquaresSegment seg = segs(s);
  const int chunks = squares_chunks(seg.n);
  const int c = static_cast<int>(blockIdx.x);
  if (c >= chunks) return;
  const int64_t per = (seg.n + chunks - 1) / chunks;
  const int64_t begin = c * per;
  const int64_t end = begin + per < seg.n ? begin + per : seg.n;
  double acc = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const double v = seg.x[i];
    acc += v * v;  // exact: a float's square fits in a double
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[s * kSquaresMaxChunks + c] = acc;
}

// Thread s adds segment s's chunk sums in order.
template <typename Segs>
__global__ void squares_finish_kernel(Segs segs, int64_t count, const double* partials,
                                      double* sums) {
  const int64_t s = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (s >= count) return;
  const int chunks = squares_chunks(segs(s).n);
  double acc = 0;
  for (int c = 0; c < chunks; ++c) acc += partials[s * kSquaresMaxChunks + c];
  sums[s] = acc;
}

template <typename Segs>
void sum_squares(Segs segs, int64_t count, double* partials, double* sums, CudaStream stream) {
  if (count <= 0) return;
  if (count > 65535) fail("sum_squares", count, " segments (at most 65535)");
  const dim3 grid(kSquaresMaxChunks, static_cast<unsigned>(count));
  squares_partial_kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(segs, partials);
  MG_CUDA(cudaGetLastError());
  squares_finish_kernel<<<static_cast<unsigned>((count + kThreads - 1) / kThreads), kThreads, 0,
                          as_cuda(stream)>>>(segs, count, partials, sums);
  MG_CUDA(cudaGetLastError());
}

// --- Newton–Schulz -----------------------------------------------------------------------------

// Y[i] = X[i] / denom_b, b = i / mn, denom_b = c·√sums[b] + eps (ns_denominator).
template <typename S>
__global__ void ns_normalize_kernel(const float* __restrict__ X, S* __restrict__ Y,
                                    const double* __restrict__ sums, int64_t mn, int64_t total,
                                    float norm_factor, float eps) {
  MG_GRID_STRIDE(i, total) {
    const float denom = ns_denominator(sqrt(sums[i / mn]), norm_factor, eps);
    Y[i] = cuda::from_f32<S>(X[i] / denom);
  }
}

// B32 = b·A32, and A16 = A32 in bf16 (when A16 is not null: the A·A product's input).
__global__ void ns_prep_kernel(const float* __restrict__ A32, float* __restrict__ B32,
                               __nv_bfloat16* __restrict__ A16, float b, int64_t total) {
  MG_GRID_STRIDE(i, total) {
    const float a = A32[i];
    B32[i] = b * a;
    if (A16) A16[i] = cuda::from_f32<__nv_bfloat16>(a);
  }
}

__global__ void to_bf16_kernel(const float* __restrict__ src, __nv_bfloat16* __restrict__ dst,
                               int64_t total) {
  MG_GRID_STRIDE(i, total) dst[i] = cuda::from_f32<__nv_bfloat16>(src[i]);
}

// v = a·Y[i] + P[i] in fp32; stored back into Y (Y's type) or, on the last step, into out (fp32).
// P may equal out (same element, same thread).
template <typename S>
__global__ void ns_combine_kernel(S* Y, const float* P, float* out, float a, int64_t total) {
  MG_GRID_STRIDE(i, total) {
    const float v = a * cuda::to_f32(Y[i]) + P[i];
    if (out)
      out[i] = v;
    else
      Y[i] = cuda::from_f32<S>(v);
  }
}

template <typename S>
__global__ void ns_to_f32_kernel(const S* __restrict__ Y, float* __restrict__ out, int64_t total) {
  MG_GRID_STRIDE(i, total) out[i] = cuda::to_f32(Y[i]);
}

// --- sign, frobenius ---------------------------------------------------------------------------

__global__ void sign_kernel(const float* X, float* out, int64_t total) {
  MG_GRID_STRIDE(i, total) out[i] = sign_element(X[i]);
}

__global__ void frobenius_kernel(const float* X, float* out, const double* __restrict__ sums,
                                 int64_t mn, int64_t total) {
  MG_GRID_STRIDE(i, total) out[i] = frobenius_element(X[i], sqrt(sums[i / mn]));
}

// --- exact dualizers ---------------------------------------------------------------------------

enum ExactMode : int { kPolar = 0, kNuclear = 1, kSchatten = 2 };

__global__ void to_f64_kernel(const float* __restrict__ src, double* __restrict__ dst,
                              int64_t total) {
  MG_GRID_STRIDE(i, total) dst[i] = src[i];
}

// One block. lam [k] ascending (syevd). Writes coef [k] and zero[0] = 1 when λ_max is not
// positive (the zero matrix: the output is 0 like on the CPU), else 0.
__global__ void __launch_bounds__(kThreads)
    exact_coef_kernel(const double* __restrict__ lam, int64_t k, int mode, double q,
                      double* __restrict__ coef, int* __restrict__ zero) {
  __shared__ double total_shared;
  const double lam_max = exact_lam_max(lam[k - 1]);
  if (!(lam_max > 0)) {  // the same decision in every thread
    for (int64_t i = threadIdx.x; i < k; i += kThreads) coef[i] = 0.0;
    if (threadIdx.x == 0) *zero = 1;
    return;
  }
  if (threadIdx.x == 0) *zero = 0;
  const double cutoff = exact_cutoff(lam_max, k);
  const double s_max = sqrt(lam_max);
  if (mode == kPolar) {
    for (int64_t i = threadIdx.x; i < k; i += kThreads)
      coef[i] = exact_coef_polar(exact_sigma(lam[i], cutoff));
    return;
  }
  // p = 1: how many singular values tie with the top one; else S = Σ (σ/σ_max)^q. Counts are
  // exact in double.
  double part = 0;
  for (int64_t i = threadIdx.x; i < k; i += kThreads) {
    const double sig = exact_sigma(lam[i], cutoff);
    part +=
        mode == kNuclear ? (exact_is_top(sig, s_max) ? 1.0 : 0.0) : schatten_term(sig, s_max, q);
  }
  const double total = block_sum(part);
  if (threadIdx.x == 0) total_shared = total;
  __syncthreads();
  const double t = total_shared;
  if (mode == kNuclear) {
    const int64_t top = static_cast<int64_t>(t);
    for (int64_t i = threadIdx.x; i < k; i += kThreads)
      coef[i] = exact_coef_nuclear(exact_sigma(lam[i], cutoff), s_max, top);
  } else {
    const double norm = schatten_norm(t, q);
    for (int64_t i = threadIdx.x; i < k; i += kThreads)
      coef[i] = exact_coef_schatten(exact_sigma(lam[i], cutoff), s_max, q, norm);
  }
}

// F = diag(coef)·E: E [k, k] row-major holds the eigenvectors in its rows (syevd's column-major
// output read row-major), so row j is scaled by coef[j].
__global__ void scale_rows_kernel(const double* __restrict__ E, const double* __restrict__ coef,
                                  double* __restrict__ F, int64_t k) {
  MG_GRID_STRIDE(i, k * k) F[i] = coef[i / k] * E[i];
}

__global__ void exact_out_kernel(const double* __restrict__ T, const int* __restrict__ zero,
                                 float* __restrict__ out, int64_t total) {
  const bool z = *zero != 0;
  MG_GRID_STRIDE(i, total) out[i] = z ? 0.0f : float(T[i]);
}

// Row-major double GEMM through column-major cuBLAS: C[M, N] = op(A)·op(B) is the column-major
// Cᵀ = op(B)ᵀ·op(A)ᵀ, with our B as cuBLAS's first operand (see core/gemm_cuda.cu).
void dgemm_rm(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const double* A,
              int64_t lda, const double* B, int64_t ldb, double* C, int64_t ldc) {
  const double one = 1.0, zero = 0.0;
  MG_CUBLAS(cublasDgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(N),
                        int(M), int(K), &one, B, int(ldb), A, int(lda), &zero, C, int(ldc)));
}

// --- workspace layouts -------------------------------------------------------------------------

struct Carver {
  size_t used = 0;
  size_t take(size_t bytes) {
    const size_t at = (used + kAlign - 1) / kAlign * kAlign;
    used = at + bytes;
    return at;
  }
};

struct NsLayout {
  size_t y, a32, b32, a16, b16, partials, sums, total;
};
NsLayout ns_layout(int64_t count, int64_t m, int64_t n, NsPrecision prec) {
  const int64_t k = std::min(m, n);
  const size_t mn = size_t(count * m * n), kk = size_t(count * k * k);
  const size_t s = prec == NsPrecision::bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
  Carver c;
  NsLayout l{};
  l.y = c.take(mn * s);
  l.a32 = c.take(kk * sizeof(float));
  l.b32 = c.take(kk * sizeof(float));
  if (prec == NsPrecision::bf16) {
    l.a16 = c.take(kk * sizeof(__nv_bfloat16));
    l.b16 = c.take(kk * sizeof(__nv_bfloat16));
  }
  l.partials = c.take(size_t(count) * kSquaresMaxChunks * sizeof(double));
  l.sums = c.take(size_t(count) * sizeof(double));
  l.total = c.used;
  return l;
}

struct ExactLayout {
  size_t xd, gram, lam, coef, f, w, t, work, info, zero, total;
  int lwork;
};
ExactLayout exact_layout(cusolverDnHandle_t solver, int64_t count, int64_t m, int64_t n) {
  const int64_t k = std::min(m, n);
  int lwork = 0;
  MG_CUSOLVER(cusolverDnDsyevd_bufferSize(solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER,
                                          int(k), nullptr, int(k), nullptr, &lwork));
  const size_t mn = size_t(m * n), kk = size_t(k * k);
  Carver c;
  ExactLayout l{};
  l.lwork = lwork;
  l.xd = c.take(mn * sizeof(double));
  l.gram = c.take(kk * sizeof(double));
  l.lam = c.take(size_t(k) * sizeof(double));
  l.coef = c.take(size_t(k) * sizeof(double));
  l.f = c.take(kk * sizeof(double));
  l.w = c.take(kk * sizeof(double));
  l.t = c.take(mn * sizeof(double));
  l.work = c.take(size_t(std::max(lwork, 1)) * sizeof(double));
  l.info = c.take(size_t(count) * sizeof(int));
  l.zero = c.take(sizeof(int));
  l.total = c.used;
  return l;
}

struct FrobeniusLayout {
  size_t partials, sums, total;
};
FrobeniusLayout frobenius_layout(int64_t count) {
  Carver c;
  FrobeniusLayout l{};
  l.partials = c.take(size_t(count) * kSquaresMaxChunks * sizeof(double));
  l.sums = c.take(size_t(count) * sizeof(double));
  l.total = c.used;
  return l;
}

template <typename T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

// --- the dualizers -----------------------------------------------------------------------------

template <typename S>
void newton_schulz(const DualizerSpec& spec, float* X, float* out, int64_t count, int64_t m,
                   int64_t n, void* ws, CudaStream stream) {
  constexpr bool kBf16 = std::is_same_v<S, __nv_bfloat16>;
  constexpr DType kType = kBf16 ? DType::bf16 : DType::f32;
  const NsLayout l = ns_layout(count, m, n, kBf16 ? NsPrecision::bf16 : NsPrecision::fp32);
  const bool left = m <= n;  // Gram Y Yᵀ [m, m]; else Yᵀ Y [n, n]
  const int64_t k = left ? m : n, mn = m * n, kk = k * k;
  const int64_t total = count * mn, total_k = count * kk;
  S* Y = at<S>(ws, l.y);              // [count, m, n]
  float* A32 = at<float>(ws, l.a32);  // [count, k, k]
  float* B32 = at<float>(ws, l.b32);  // [count, k, k]
  __nv_bfloat16* A16 = kBf16 ? at<__nv_bfloat16>(ws, l.a16) : nullptr;
  __nv_bfloat16* B16 = kBf16 ? at<__nv_bfloat16>(ws, l.b16) : nullptr;
  const void* A_in = kBf16 ? static_cast<const void*>(A16) : A32;  // A in Y's type
  const void* B_in = kBf16 ? static_cast<const void*>(B16) : B32;  // B in Y's type
  float* P = X;  // [count, m, n] fp32: the product B·Y (X is not needed after the normalisation)
  const cudaStream_t s = as_cuda(stream);

  double* sums = at<double>(ws, l.sums);
  sum_squares(SegmentStrided{X, mn, mn}, count, at<double>(ws, l.partials), sums, stream);
  ns_normalize_kernel<S><<<grid_for(total), kThreads, 0, s>>>(
      X, Y, sums, mn, total, float(ns_norm_factor(spec.coeffs)), float(spec.ns_eps));
  MG_CUDA(cudaGetLastError());

  const GemmBatch gram_batch{count, mn, mn, kk}, square_batch{count, kk, kk, kk};
  for (int step = 0; step < spec.ns_steps; ++step) {
    const NsStep c3 = ns_step_coeffs(spec.coeffs, step);
    const float a = float(c3.a), b = float(c3.b), c = float(c3.c);
    if (left)  // A = Y Yᵀ: [m, n]·[n, m]
      gemm_cuda(stream, false, true, k, k, n, 1.0f, Y, n, Y, n, 0.0f, A32, k, kType, DType::f32,
                gram_batch);
    else  // A = Yᵀ Y: [n, m]·[m, n]
      gemm_cuda(stream, true, false, k, k, m, 1.0f, Y, n, Y, n, 0.0f, A32, k, kType, DType::f32,
                gram_batch);
    ns_prep_kernel<<<grid_for(total_k), kThreads, 0, s>>>(A32, B32, A16, b, total_k);
    MG_CUDA(cudaGetLastError());
    if (c != 0.0f)  // B += c·A·A
      gemm_cuda(stream, false, false, k, k, k, c, A_in, k, A_in, k, 1.0f, B32, k, kType, DType::f32,
                square_batch);
    if (kBf16) {
      to_bf16_kernel<<<grid_for(total_k), kThreads, 0, s>>>(B32, B16, total_k);
      MG_CUDA(cudaGetLastError());
    }
    if (left)  // P = B·Y: [m, m]·[m, n]
      gemm_cuda(stream, false, false, m, n, m, 1.0f, B_in, m, Y, n, 0.0f, P, n, kType, DType::f32,
                GemmBatch{count, kk, mn, mn});
    else  // P = Y·B: [m, n]·[n, n]
      gemm_cuda(stream, false, false, m, n, n, 1.0f, Y, n, B_in, n, 0.0f, P, n, kType, DType::f32,
                GemmBatch{count, mn, kk, mn});
    const bool last = step + 1 == spec.ns_steps;
    ns_combine_kernel<S><<<grid_for(total), kThreads, 0, s>>>(Y, P, last ? out : nullptr, a, total);
    MG_CUDA(cudaGetLastError());
  }
  if (spec.ns_steps <= 0) {
    ns_to_f32_kernel<S><<<grid_for(total), kThreads, 0, s>>>(Y, out, total);
    MG_CUDA(cudaGetLastError());
  }
}

void exact(const DualizerSpec& spec, cublasHandle_t blas, cusolverDnHandle_t solver, float* X,
           float* out, int64_t count, int64_t m, int64_t n, void* ws, CudaStream stream) {
  const ExactLayout l = exact_layout(solver, count, m, n);
  const bool left = m <= n;
  const int64_t k = left ? m : n, mn = m * n;
  double* Xd = at<double>(ws, l.xd);      // [m, n]
  double* E = at<double>(ws, l.gram);     // [k, k] Gram, then the eigenvectors (rows)
  double* lam = at<double>(ws, l.lam);    // [k] ascending
  double* coef = at<double>(ws, l.coef);  // [k]
  double* F = at<double>(ws, l.f);        // [k, k] diag(coef)·E
  double* W = at<double>(ws, l.w);        // [k, k] Eᵀ·diag(coef)·E = U diag(coef) Uᵀ
  double* T = at<double>(ws, l.t);        // [m, n]
  int* info = at<int>(ws, l.info);        // [count]
  int* zero = at<int>(ws, l.zero);
  const cudaStream_t s = as_cuda(stream);
  const double p = spec.kind == DualizerKind::polar ? INFINITY : spec.p;
  const int mode = std::isinf(p) ? kPolar : (p == 1.0 ? kNuclear : kSchatten);
  const double q = mode == kSchatten ? p / (p - 1) : 0.0;

  for (int64_t b = 0; b < count; ++b) {
    to_f64_kernel<<<grid_for(mn), kThreads, 0, s>>>(X + b * mn, Xd, mn);
    MG_CUDA(cudaGetLastError());
    if (left)
      dgemm_rm(blas, false, true, m, m, n, Xd, n, Xd, n, E, m);  // X Xᵀ [m, m]
    else
      dgemm_rm(blas, true, false, n, n, m, Xd, n, Xd, n, E, n);  // XᵀX [n, n]
    // Symmetric, so row- and column-major agree on input; on output the eigenvectors are the
    // columns of the column-major E, i.e. the rows of our row-major E.
    MG_CUSOLVER(cusolverDnDsyevd(solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, int(k),
                                 E, int(k), lam, at<double>(ws, l.work), l.lwork, info + b));
    exact_coef_kernel<<<1, kThreads, 0, s>>>(lam, k, mode, q, coef, zero);
    MG_CUDA(cudaGetLastError());
    scale_rows_kernel<<<grid_for(k * k), kThreads, 0, s>>>(E, coef, F, k);
    MG_CUDA(cudaGetLastError());
    dgemm_rm(blas, true, false, k, k, k, E, k, F, k, W, k);  // W = Eᵀ F
    if (left)
      dgemm_rm(blas, false, false, m, n, m, W, m, Xd, n, T, n);  // T = W X  [m, n]
    else
      dgemm_rm(blas, false, false, m, n, n, Xd, n, W, n, T, n);  // T = X W  [m, n]
    exact_out_kernel<<<grid_for(mn), kThreads, 0, s>>>(T, zero, out + b * mn, mn);
    MG_CUDA(cudaGetLastError());
  }
  std::vector<int> host(static_cast<size_t>(count));
  MG_CUDA(cudaMemcpyAsync(host.data(), info, sizeof(int) * host.size(), cudaMemcpyDeviceToHost, s));
  MG_CUDA(cudaStreamSynchronize(s));
  for (int64_t b = 0; b < count; ++b)
    if (host[size_t(b)] != 0)
      fail("dualize", spec.name(), ": cusolverDnDsyevd on the ", k, "x", k,
           " Gram matrix of matrix ", b, " of ", count, " returned info ", host[size_t(b)],
           host[size_t(b)] > 0 ? " (did not converge)" : " (bad argument)");
}

void check_sizes(const DualizerSpec& spec, int64_t count, int64_t m, int64_t n) {
  if (count < 0 || m <= 0 || n <= 0)
    fail("dualize", "dualize_batch of ", count, " matrices of ", m, "x", n);
  if (m > kIntMax / 8 || n > kIntMax / 8 || (spec.exact() && m * n > kIntMax))
    fail("dualize", spec.name(), ": a ", m, "x", n, " matrix is beyond the 32-bit sizes");
}

}  // namespace

std::string_view ns_precision_name(NsPrecision p) {
  return p == NsPrecision::bf16 ? "bf16" : "fp32";
}

void sum_squares_segments(const SquaresSegment* segs, int64_t count, double* partials, double* sums,
                          CudaStream stream) {
  sum_squares(SegmentArray{segs}, count, partials, sums, stream);
}

void sum_squares_strided(const float* x, int64_t count, int64_t n, int64_t stride, double* partials,
                         double* sums, CudaStream stream) {
  sum_squares(SegmentStrided{x, n, stride}, count, partials, sums, stream);
}

CudaDualizer::CudaDualizer(CudaStream stream) : stream_(stream) {
  cublasHandle_t blas = nullptr;
  MG_CUBLAS(cublasCreate(&blas));
  blas_ = blas;
  cusolverDnHandle_t solver = nullptr;
  const cusolverStatus_t st = cusolverDnCreate(&solver);
  if (st != CUSOLVER_STATUS_SUCCESS) {
    cublasDestroy(blas);
    MG_CUSOLVER(st);
  }
  solver_ = solver;
  try {
    MG_CUBLAS(cublasSetStream(blas, as_cuda(stream)));
    // Plain IEEE double GEMMs: no fixed-point emulation of FP64.
    MG_CUBLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    MG_CUSOLVER(cusolverDnSetStream(solver, as_cuda(stream)));
  } catch (...) {
    cusolverDnDestroy(solver);
    cublasDestroy(blas);
    throw;
  }
}

CudaDualizer::~CudaDualizer() {
  if (solver_) cusolverDnDestroy(solver_);
  if (blas_) cublasDestroy(blas_);
}

size_t CudaDualizer::workspace_bytes(const DualizerSpec& spec, int64_t count, int64_t m, int64_t n,
                                     NsPrecision precision) const {
  check_sizes(spec, count, m, n);
  if (count == 0) return 0;
  switch (spec.kind) {
    case DualizerKind::newton_schulz:
      return ns_layout(count, m, n, precision).total;
    case DualizerKind::polar:
    case DualizerKind::schatten_p:
      return exact_layout(solver_, count, m, n).total;
    case DualizerKind::sign:
      return 0;
    case DualizerKind::frobenius:
      return frobenius_layout(count).total;
  }
  return 0;
}

void CudaDualizer::dualize_batch(const DualizerSpec& spec, float* X, float* out, int64_t count,
                                 int64_t m, int64_t n, NsPrecision precision, void* workspace,
                                 size_t ws_bytes) const {
  const size_t need = workspace_bytes(spec, count, m, n, precision);
  if (ws_bytes < need)
    fail("dualize", spec.name(), " of ", count, " matrices of ", m, "x", n, " needs ", need,
         " bytes of workspace, got ", ws_bytes);
  if (count == 0) return;
  if (need > 0 && reinterpret_cast<uintptr_t>(workspace) % kAlign != 0)
    fail("dualize", "the workspace must be ", kAlign, "-byte aligned");
  const int64_t total = count * m * n;
  const cudaStream_t s = as_cuda(stream_);
  switch (spec.kind) {
    case DualizerKind::newton_schulz:
      if (precision == NsPrecision::bf16)
        newton_schulz<__nv_bfloat16>(spec, X, out, count, m, n, workspace, stream_);
      else
        newton_schulz<float>(spec, X, out, count, m, n, workspace, stream_);
      return;
    case DualizerKind::polar:
    case DualizerKind::schatten_p:
      exact(spec, blas_, solver_, X, out, count, m, n, workspace, stream_);
      return;
    case DualizerKind::sign:
      sign_kernel<<<grid_for(total), kThreads, 0, s>>>(X, out, total);
      MG_CUDA(cudaGetLastError());
      return;
    case DualizerKind::frobenius: {
      const FrobeniusLayout l = frobenius_layout(count);
      double* sums = at<double>(workspace, l.sums);
      sum_squares(SegmentStrided{X, m * n, m * n}, count, at<double>(workspace, l.partials), sums,
                  stream_);
      frobenius_kernel<<<grid_for(total), kThreads, 0, s>>>(X, out, sums, m * n, total);
      MG_CUDA(cudaGetLastError());
      return;
    }
  }
}

}  // namespace muongpt
