// Fused soft-cap + cross-entropy on the GPU: one block per row of logits, never a probability
// matrix. The forward streams the row once (online logsumexp); the backward streams it once more,
// recomputing the cap and the probabilities from the saved lse, and overwrites the row with its
// gradient. Per-element math is cross_entropy.h's softcap / softcap_grad.
#include "model/ops/cross_entropy.h"
#include "model/ops/ops_cuda.cuh"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kThreads = 512;  // per row; V = 50257 gives ~98 logits per thread
constexpr int kWarps = kThreads / kWarp;
constexpr int kMeanThreads = 1024;

// Merges the running logsumexp state (m, s) = (max, Σ exp(z − max)) with another one.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  if (mm == -INFINITY) return;  // both empty (threads that saw no column)
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

// logits: [N, Vp] (row stride Vp), only columns < V read; losses, lse: [N].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    softcap_ce_forward_kernel(float* losses, float* lse, const T* logits, const int32_t* targets,
                              int64_t V, int64_t Vp, float cap) {
  __shared__ float sh_m[kWarps], sh_s[kWarps];
  const int64_t n = blockIdx.x;
  const T* row = logits + n * Vp;
  // Thread-local online logsumexp over columns threadIdx.x, + kThreads, ...
  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += kThreads) {
    const float z = softcap(to_f32(row[j]), cap);
    if (z > m) {
      s = s * expf(m - z) + 1.f;  // rescale to the new max (expf(−inf) = 0 on the first column)
      m = z;
    } else {
      s += expf(z - m);
    }
  }
  // Warp, then block, in a fixed order: the same bits every run.
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float m2 = __shfl_xor_sync(kFullMask, m, off);
    const float s2 = __shfl_xor_sync(kFullMask, s, off);
    lse_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) sh_m[warp] = m, sh_s[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float mt = sh_m[0], st = sh_s[0];
    for (int w = 1; w < kWarps; ++w) lse_merge(mt, st, sh_m[w], sh_s[w]);
    const float l = mt + logf(st);
    lse[n] = l;
    losses[n] = l - softcap(to_f32(row[targets[n]]), cap);
  }
}

// In place on logits [N, Vp]: column j < V becomes scale · (p_j − [j = target]) · softcap'(z_j)
// (cross_entropy.h's softcap_cross_entropy_grad), columns V..Vp become 0. Each entry is read and
// written by the same thread.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    softcap_ce_backward_kernel(T* logits, const float* lse, const int32_t* targets, int64_t V,
                               int64_t Vp, float cap, float scale) {
  const int64_t n = blockIdx.x;
  T* row = logits + n * Vp;
  const float l = lse[n];
  const int64_t target = targets[n];
  for (int64_t j = threadIdx.x; j < Vp; j += kThreads) {
    const float g =
        j < V ? softcap_cross_entropy_grad(softcap(to_f32(row[j]), cap), l, j == target, cap, scale)
              : 0.f;
    row[j] = from_f32<T>(g);
  }
}

// mean[0] = Σ losses / N: each thread sums a strided slice in double, then a shared-memory tree
// in a fixed shape. One block, so no inter-block order to worry about.
__global__ void __launch_bounds__(kMeanThreads)
    mean_loss_kernel(double* mean, const float* losses, int64_t N) {
  __shared__ double sh[kMeanThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < N; i += kMeanThreads) s += double(losses[i]);
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = kMeanThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) mean[0] = sh[0] / double(N);
}

void check_shape(const char* op, int64_t N, int64_t V, int64_t Vp) {
  if (N < 0 || V <= 0 || Vp < V) fail(op, "bad shape: ", N, " rows, V = ", V, ", Vp = ", Vp);
  if (N > 0x7fffffff) fail(op, N, " rows are too many for one launch");
}

}  // namespace

template <typename T>
void softcap_cross_entropy_forward_cuda(float* losses, float* lse, double* mean_loss,
                                        const T* logits, const int32_t* targets, int64_t N,
                                        int64_t V, int64_t Vp, float cap, CudaStream stream) {
  check_shape("softcap_cross_entropy_forward_cuda", N, V, Vp);
  if (N == 0) return;
  softcap_ce_forward_kernel<T>
      <<<unsigned(N), kThreads, 0, stream>>>(losses, lse, logits, targets, V, Vp, cap);
  MG_CUDA_LAUNCH("softcap_ce_forward_kernel");
  if (mean_loss) {
    mean_loss_kernel<<<1, kMeanThreads, 0, stream>>>(mean_loss, losses, N);
    MG_CUDA_LAUNCH("mean_loss_kernel");
  }
}

template <typename T>
void softcap_cross_entropy_backward_cuda(T* logits, const float* lse, const int32_t* targets,
                                         int64_t N, int64_t V, int64_t Vp, float cap, float dloss,
                                         CudaStream stream) {
  check_shape("softcap_cross_entropy_backward_cuda", N, V, Vp);
  if (N == 0) return;
  const float scale = dloss / float(N);  // as the CPU float path: dloss / T(N)
  softcap_ce_backward_kernel<T>
      <<<unsigned(N), kThreads, 0, stream>>>(logits, lse, targets, V, Vp, cap, scale);
  MG_CUDA_LAUNCH("softcap_ce_backward_kernel");
}

#define MG_INSTANTIATE(T)                                                                        \
  template void softcap_cross_entropy_forward_cuda<T>(float*, float*, double*, const T*,         \
                                                      const int32_t*, int64_t, int64_t, int64_t, \
                                                      float, CudaStream);                        \
  template void softcap_cross_entropy_backward_cuda<T>(                                          \
      T*, const float*, const int32_t*, int64_t, int64_t, int64_t, float, float, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
