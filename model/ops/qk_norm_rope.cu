// QK-norm + RoPE on the GPU. One warp per head row (b, t, h); blockIdx.y picks q (0) or k (1).
// Lane l handles the pairs (j, j + dh/2) for j = l, l + 32, ... < dh/2, so the norm's reduction
// and the rotation both work on lane-private data once the warp sum is taken.
#include "model/ops/ops_cuda.cuh"
#include "model/ops/qk_norm_rope.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kRowWarps = 8;

struct RowIndex {
  int64_t in;   // row offset (in rows of dh) in [B, T, H, dh]; also the rstd index
  int64_t out;  // row offset in [B, H, T, dh]
  int64_t t;    // position
};

// row = (b·T + t)·H + h enumerates the [B, T, H] rows.
__device__ __forceinline__ RowIndex row_index(int64_t row, int64_t T_, int64_t H) {
  const int64_t h = row % H, bt = row / H;
  const int64_t t = bt % T_, b = bt / T_;
  return {row, (b * H + h) * T_ + t, t};
}

template <typename T>
__global__ void qk_norm_rope_forward_kernel(T* q_out, T* k_out, float* q_rstd, float* k_rstd,
                                            const T* q, const T* k, const float* cos,
                                            const float* sin, int64_t rows, int64_t T_, int64_t H,
                                            int64_t dh, float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // uniform per warp
  const bool is_k = blockIdx.y == 1;
  const RowIndex ix = row_index(row, T_, H);
  const T* x = (is_k ? k : q) + ix.in * dh;
  T* y = (is_k ? k_out : q_out) + ix.out * dh;
  const int64_t half = dh / 2;
  const float* cos_t = cos + ix.t * half;
  const float* sin_t = sin + ix.t * half;

  float ss = 0.f;
  for (int64_t j = lane; j < half; j += kWarp) {
    const float a = to_f32(x[j]), b = to_f32(x[j + half]);
    ss += a * a + b * b;
  }
  const float r = rmsnorm_rstd(warp_sum(ss), dh, eps);
  if (lane == 0) (is_k ? k_rstd : q_rstd)[row] = r;
  for (int64_t j = lane; j < half; j += kWarp) {
    float a = to_f32(x[j]) * r, b = to_f32(x[j + half]) * r;  // rmsnorm (no gain)
    rope_pair(a, b, cos_t[j], sin_t[j]);
    y[j] = from_f32<T>(a);
    y[j + half] = from_f32<T>(b);
  }
}

// Backward of one row: un-rotate the incoming gradient (rope with −sin), then the rmsnorm
// backward without a gain: dx = r·dn − x·c, c = r³·(Σ dn·x)/dh.
template <typename T>
__global__ void qk_norm_rope_backward_kernel(T* dq, T* dk, const T* dq_out, const T* dk_out,
                                             const T* q, const T* k, const float* q_rstd,
                                             const float* k_rstd, const float* cos,
                                             const float* sin, int64_t rows, int64_t T_, int64_t H,
                                             int64_t dh) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // uniform per warp
  const bool is_k = blockIdx.y == 1;
  const RowIndex ix = row_index(row, T_, H);
  const T* g = (is_k ? dk_out : dq_out) + ix.out * dh;
  const T* x = (is_k ? k : q) + ix.in * dh;
  T* dx = (is_k ? dk : dq) + ix.in * dh;
  const float r = (is_k ? k_rstd : q_rstd)[row];
  const int64_t half = dh / 2;
  const float* cos_t = cos + ix.t * half;
  const float* sin_t = sin + ix.t * half;

  float s = 0.f;
  for (int64_t j = lane; j < half; j += kWarp) {
    float a = to_f32(g[j]), b = to_f32(g[j + half]);
    rope_pair(a, b, cos_t[j], -sin_t[j]);  // gradient w.r.t. the normalised row
    s += a * to_f32(x[j]) + b * to_f32(x[j + half]);
  }
  const float c = rmsnorm_backward_coef(r, warp_sum(s), dh);
  for (int64_t j = lane; j < half; j += kWarp) {  // recomputes the same rotation
    float a = to_f32(g[j]), b = to_f32(g[j + half]);
    rope_pair(a, b, cos_t[j], -sin_t[j]);
    dx[j] = from_f32<T>(rmsnorm_dx(a, to_f32(x[j]), 1.f, r, c));
    dx[j + half] = from_f32<T>(rmsnorm_dx(b, to_f32(x[j + half]), 1.f, r, c));
  }
}

int64_t check_shape(const char* op, int64_t B, int64_t T_, int64_t H, int64_t dh) {
  if (B < 0 || T_ < 0 || H <= 0 || dh <= 0)
    fail(op, "bad shape B=", B, " T=", T_, " H=", H, " dh=", dh);
  if (dh % 4 != 0) fail(op, "d_head ", dh, " is not a multiple of 4");
  const int64_t rows = B * T_ * H;
  if ((rows + kRowWarps - 1) / kRowWarps > 0x7fffffff) fail(op, rows, " head rows are too many");
  return rows;
}

}  // namespace

template <typename T>
void qk_norm_rope_forward_cuda(T* q_out, T* k_out, float* q_rstd, float* k_rstd, const T* q,
                               const T* k, const float* cos, const float* sin, int64_t B,
                               int64_t T_, int64_t H, int64_t dh, float eps, CudaStream stream) {
  const int64_t rows = check_shape("qk_norm_rope_forward_cuda", B, T_, H, dh);
  if (rows == 0) return;
  const dim3 grid(unsigned((rows + kRowWarps - 1) / kRowWarps), 2);
  qk_norm_rope_forward_kernel<T><<<grid, kRowWarps * kWarp, 0, stream>>>(
      q_out, k_out, q_rstd, k_rstd, q, k, cos, sin, rows, T_, H, dh, eps);
  MG_CUDA_LAUNCH("qk_norm_rope_forward_kernel");
}

template <typename T>
void qk_norm_rope_backward_cuda(T* dq, T* dk, const T* dq_out, const T* dk_out, const T* q,
                                const T* k, const float* q_rstd, const float* k_rstd,
                                const float* cos, const float* sin, int64_t B, int64_t T_,
                                int64_t H, int64_t dh, CudaStream stream) {
  const int64_t rows = check_shape("qk_norm_rope_backward_cuda", B, T_, H, dh);
  if (rows == 0) return;
  const dim3 grid(unsigned((rows + kRowWarps - 1) / kRowWarps), 2);
  qk_norm_rope_backward_kernel<T><<<grid, kRowWarps * kWarp, 0, stream>>>(
      dq, dk, dq_out, dk_out, q, k, q_rstd, k_rstd, cos, sin, rows, T_, H, dh);
  MG_CUDA_LAUNCH("qk_norm_rope_backward_kernel");
}

#define MG_INSTANTIATE(T)                                                                       \
  template void qk_norm_rope_forward_cuda<T>(T*, T*, float*, float*, const T*, const T*,        \
                                             const float*, const float*, int64_t, int64_t,      \
                                             int64_t, int64_t, float, CudaStream);              \
  template void qk_norm_rope_backward_cuda<T>(                                                  \
      T*, T*, const T*, const T*, const T*, const T*, const float*, const float*, const float*, \
      const float*, int64_t, int64_t, int64_t, int64_t, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
