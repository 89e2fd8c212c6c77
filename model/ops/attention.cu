// Causal attention on the GPU, the straightforward version: two strided batched GEMMs around a
// row softmax kernel (forward), four GEMMs around the softmax backward kernel (backward). Every
// (batch, head) is one [T, dh] matrix in the [B, H, T, dh] layout, so the B·H products of each
// step are one gemm_cuda call with batch strides T·dh (operands) and T·T (scores/probabilities).
// The full T×T products are computed (the masked half is wasted work); the fused flash kernel
// that skips it belongs to the performance work.
#include "core/gemm_cuda.h"
#include "model/ops/attention.h"
#include "model/ops/ops_cuda.cuh"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kRowWarps = 8;

// One warp per row r of [rows, T]; position t = r mod T, so the row's live entries are u ≤ t.
template <typename T>
__global__ void causal_softmax_kernel(T* probs, const float* scores, int64_t rows, int64_t T_) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // uniform per warp
  const int64_t len = row % T_ + 1;
  const float* s = scores + row * T_;
  T* p = probs + row * T_;
  float m = -INFINITY;
  for (int64_t u = lane; u < len; u += kWarp) m = fmaxf(m, s[u]);
  m = warp_max(m);  // every row has ≥ 1 live entry, so m is finite for finite scores
  float sum = 0.f;
  for (int64_t u = lane; u < len; u += kWarp) sum += expf(s[u] - m);
  const float inv = 1.f / warp_sum(sum);
  // The same expf(s − m) again (same inputs, same bits), scaled; masked entries are exact zeros.
  for (int64_t u = lane; u < T_; u += kWarp)
    p[u] = from_f32<T>(u < len ? expf(s[u] - m) * inv : 0.f);
}

template <typename T>
__global__ void causal_softmax_backward_kernel(T* ds, const float* dp, const T* p, int64_t rows,
                                               int64_t T_) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // uniform per warp
  const int64_t len = row % T_ + 1;
  const float* dpr = dp + row * T_;
  const T* pr = p + row * T_;
  T* dsr = ds + row * T_;
  float dot = 0.f;
  for (int64_t u = lane; u < len; u += kWarp) dot += to_f32(pr[u]) * dpr[u];
  dot = warp_sum(dot);
  // Lane-private entries, read then written by the same lane: ds may alias p.
  for (int64_t u = lane; u < T_; u += kWarp)
    dsr[u] = from_f32<T>(u < len ? softmax_grad_element(to_f32(pr[u]), dpr[u], dot) : 0.f);
}

// out[b, h, t, :] = in[b, t, h, :]: one warp per row of dh (the index arithmetic once per row,
// the copy coalesced along dh on both sides). Warps stride over rows = B·H·T output rows.
template <typename T>
__global__ void heads_split_kernel(T* out, const T* in, int64_t rows, int64_t T_, int64_t H,
                                   int64_t dh) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp; row < rows;
       row += int64_t(gridDim.x) * kRowWarps) {
    const int64_t t = row % T_, bh = row / T_;  // row = (b·H + h)·T + t
    const int64_t h = bh % H, b = bh / H;
    const T* src = in + ((b * T_ + t) * H + h) * dh;
    T* dst = out + row * dh;
    for (int64_t c = lane; c < dh; c += kWarp) dst[c] = src[c];
  }
}

// out[b, t, h, :] = in[b, h, t, :], the inverse.
template <typename T>
__global__ void heads_merge_kernel(T* out, const T* in, int64_t rows, int64_t T_, int64_t H,
                                   int64_t dh) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp; row < rows;
       row += int64_t(gridDim.x) * kRowWarps) {
    const int64_t h = row % H, bt = row / H;  // row = (b·T + t)·H + h
    const int64_t t = bt % T_, b = bt / T_;
    const T* src = in + ((b * H + h) * T_ + t) * dh;
    T* dst = out + row * dh;
    for (int64_t c = lane; c < dh; c += kWarp) dst[c] = src[c];
  }
}

void check_heads(const char* op, int64_t B, int64_t T_, int64_t H, int64_t dh) {
  if (B < 0 || T_ < 0 || H <= 0 || dh <= 0)
    fail(op, "bad shape B=", B, " T=", T_, " H=", H, " dh=", dh);
}

void check_rows(const char* op, int64_t rows, int64_t T_) {
  if (rows < 0 || T_ <= 0) fail(op, "bad shape: ", rows, " rows of length ", T_);
  if ((rows + kRowWarps - 1) / kRowWarps > 0x7fffffff) fail(op, rows, " rows are too many");
}

}  // namespace

template <typename T>
void heads_split_cuda(T* out, const T* in, int64_t B, int64_t T_, int64_t H, int64_t dh,
                      CudaStream stream) {
  check_heads("heads_split_cuda", B, T_, H, dh);
  const int64_t rows = B * T_ * H;
  if (rows == 0) return;
  heads_split_kernel<T>
      <<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(out, in, rows, T_, H, dh);
  MG_CUDA_LAUNCH("heads_split_kernel");
}

template <typename T>
void heads_merge_cuda(T* out, const T* in, int64_t B, int64_t T_, int64_t H, int64_t dh,
                      CudaStream stream) {
  check_heads("heads_merge_cuda", B, T_, H, dh);
  const int64_t rows = B * T_ * H;
  if (rows == 0) return;
  heads_merge_kernel<T>
      <<<grid_for(rows, kRowWarps), kRowWarps * kWarp, 0, stream>>>(out, in, rows, T_, H, dh);
  MG_CUDA_LAUNCH("heads_merge_kernel");
}

template <typename T>
void causal_softmax_cuda(T* probs, const float* scores, int64_t rows, int64_t T_,
                         CudaStream stream) {
  check_rows("causal_softmax_cuda", rows, T_);
  if (rows == 0) return;
  const unsigned blocks = unsigned((rows + kRowWarps - 1) / kRowWarps);
  causal_softmax_kernel<T><<<blocks, kRowWarps * kWarp, 0, stream>>>(probs, scores, rows, T_);
  MG_CUDA_LAUNCH("causal_softmax_kernel");
}

template <typename T>
void causal_softmax_backward_cuda(T* dscores, const float* dprobs, const T* probs, int64_t rows,
                                  int64_t T_, CudaStream stream) {
  check_rows("causal_softmax_backward_cuda", rows, T_);
  if (rows == 0) return;
  const unsigned blocks = unsigned((rows + kRowWarps - 1) / kRowWarps);
  causal_softmax_backward_kernel<T>
      <<<blocks, kRowWarps * kWarp, 0, stream>>>(dscores, dprobs, probs, rows, T_);
  MG_CUDA_LAUNCH("causal_softmax_backward_kernel");
}

template <typename T>
void attention_forward_cuda(T* y, T* probs, float* scores, const T* q, const T* k, const T* v,
                            int64_t B, int64_t T_, int64_t H, int64_t dh, float scale,
                            CudaStream stream) {
  check_heads("attention_forward_cuda", B, T_, H, dh);
  if (B == 0 || T_ == 0) return;
  const DType ab = storage_dtype<T>();
  const int64_t heads = B * H, hs = T_ * dh, ss = T_ * T_;  // per-head strides (elements)
  // scores = scale · q kᵀ                     [T, T] per head, fp32
  gemm_cuda(stream, false, true, T_, T_, dh, scale, q, dh, k, dh, 0.f, scores, T_, ab, DType::f32,
            GemmBatch{heads, hs, hs, ss});
  causal_softmax_cuda(probs, scores, heads * T_, T_, stream);
  // y = probs · v                             [T, dh] per head
  gemm_cuda(stream, false, false, T_, dh, T_, 1.f, probs, T_, v, dh, 0.f, y, dh, ab, ab,
            GemmBatch{heads, ss, hs, hs});
}

template <typename T>
void attention_backward_cuda(T* dq, T* dk, T* dv, float* dprobs, T* dscores, const T* dy,
                             const T* probs, const T* q, const T* k, const T* v, int64_t B,
                             int64_t T_, int64_t H, int64_t dh, float scale, CudaStream stream) {
  check_heads("attention_backward_cuda", B, T_, H, dh);
  if (B == 0 || T_ == 0) return;
  const DType ab = storage_dtype<T>();
  const int64_t heads = B * H, hs = T_ * dh, ss = T_ * T_;
  // dprobs = dy vᵀ                            [T, T] per head, fp32
  gemm_cuda(stream, false, true, T_, T_, dh, 1.f, dy, dh, v, dh, 0.f, dprobs, T_, ab, DType::f32,
            GemmBatch{heads, hs, hs, ss});
  // dv = probsᵀ dy                            before dscores may overwrite probs
  gemm_cuda(stream, true, false, T_, dh, T_, 1.f, probs, T_, dy, dh, 0.f, dv, dh, ab, ab,
            GemmBatch{heads, ss, hs, hs});
  causal_softmax_backward_cuda(dscores, dprobs, probs, heads * T_, T_, stream);
  // dq = scale · dscores k,   dk = scale · dscoresᵀ q
  gemm_cuda(stream, false, false, T_, dh, T_, scale, dscores, T_, k, dh, 0.f, dq, dh, ab, ab,
            GemmBatch{heads, ss, hs, hs});
  gemm_cuda(stream, true, false, T_, dh, T_, scale, dscores, T_, q, dh, 0.f, dk, dh, ab, ab,
            GemmBatch{heads, ss, hs, hs});
}

#define MG_INSTANTIATE(T)                                                                          \
  template void heads_split_cuda<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, CudaStream); \
  template void heads_merge_cuda<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, CudaStream); \
  template void causal_softmax_cuda<T>(T*, const float*, int64_t, int64_t, CudaStream);            \
  template void causal_softmax_backward_cuda<T>(T*, const float*, const T*, int64_t, int64_t,      \
                                                CudaStream);                                       \
  template void attention_forward_cuda<T>(T*, T*, float*, const T*, const T*, const T*, int64_t,   \
                                          int64_t, int64_t, int64_t, float, CudaStream);           \
  template void attention_backward_cuda<T>(T*, T*, T*, float*, T*, const T*, const T*, const T*,   \
                                           const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                           float, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
