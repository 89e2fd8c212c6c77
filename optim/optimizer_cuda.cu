// Elementwise kernels of the CUDA optimizer (see optim/optimizer_cuda_kernels.h). Compiled with
// -fmad=false (CMakeLists.txt), so the shared per-element math of optim/update_math.h rounds
// exactly as the CPU loops do: the same float operations in the same order, IEEE division and
// square root, no contracted multiply-adds. Grid-stride loops with 64-bit indices.
#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"
#include "optim/optimizer_cuda_kernels.h"

namespace muongpt {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// Blocks along x for n elements per member, so that x·count blocks stay within kMaxBlocks-ish
// (at least one per member); grid-stride loops cover the rest.
unsigned blocks_x(int64_t n, int64_t count) {
  const int64_t cap = std::max<int64_t>(1, kMaxBlocks / std::max<int64_t>(count, 1));
  return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, cap));
}

void check_count(const char* what, int64_t count) {
  if (count > 65535) fail("optim", what, ": ", count, " matrices in one group (at most 65535)");
}

__global__ void muon_momentum_kernel(const MuonMember* __restrict__ members, int64_t mn, float mu,
                                     float one_minus_mu, bool ema, bool nesterov,
                                     float* __restrict__ u) {
  const int64_t b = blockIdx.y;
  const MuonMember m = members[b];
  float* ub = u + b * mn;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < mn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float buf = m.buf[i];
    ub[i] = muon_momentum_element(m.grad[i], buf, mu, one_minus_mu, ema, nesterov);
    m.buf[i] = buf;
  }
}

__global__ void muon_apply_kernel(const MuonMember* __restrict__ members, int64_t mn,
                                  const float* __restrict__ O, double lr_scale,
                                  float* __restrict__ delta) {
  const int64_t b = blockIdx.y;
  const MuonMember m = members[b];
  const MuonConsts k = muon_consts(m.lr * lr_scale, m.wd, m.scale);
  const float* ob = O + b * mn;
  float* db = delta ? delta + m.delta_offset : nullptr;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < mn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float before = m.value[i];
    const float after = muon_apply_element(before, ob[i], k.decay, k.step);
    m.value[i] = after;
    if (m.working) m.working[i] = cuda::f32_to_bf16_bits(after);
    if (db) db[i] = after - before;
  }
}

__global__ void adamw_kernel(float* __restrict__ value, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v,
                             uint16_t* __restrict__ working, float* __restrict__ delta, int64_t n,
                             AdamWConsts k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float before = value[i];
    float p = before, mi = m[i], vi = v[i];
    adamw_element(p, grad[i], mi, vi, k);
    value[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (working) working[i] = cuda::f32_to_bf16_bits(p);
    if (delta) delta[i] = p - before;
  }
}

__global__ void segment_copies_kernel(const SegmentCopy* __restrict__ copies, float scale,
                                      bool record) {
  const SegmentCopy c = copies[blockIdx.y];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < c.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = scale == 1.0f ? c.src[i] : c.src[i] * scale;
    if (record && c.delta) c.delta[i] = v - c.dst[i];
    c.dst[i] = v;
    if (c.working) c.working[i] = cuda::f32_to_bf16_bits(v);
  }
}

}  // namespace

void launch_muon_momentum(const MuonMember* members, int64_t count, int64_t mn, float mu,
                          float one_minus_mu, bool ema, bool nesterov, float* u,
                          CudaStream stream) {
  if (count <= 0 || mn <= 0) return;
  check_count("muon momentum", count);
  const dim3 grid(blocks_x(mn, count), static_cast<unsigned>(count));
  muon_momentum_kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(members, mn, mu, one_minus_mu, ema,
                                                               nesterov, u);
  MG_CUDA(cudaGetLastError());
}

void launch_muon_apply(const MuonMember* members, int64_t count, int64_t mn, const float* O,
                       double lr_scale, float* delta, CudaStream stream) {
  if (count <= 0 || mn <= 0) return;
  check_count("muon apply", count);
  const dim3 grid(blocks_x(mn, count), static_cast<unsigned>(count));
  muon_apply_kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(members, mn, O, lr_scale, delta);
  MG_CUDA(cudaGetLastError());
}

void launch_adamw(float* value, const float* grad, float* m, float* v, uint16_t* working,
                  float* delta, int64_t n, const AdamWConsts& k, CudaStream stream) {
  if (n <= 0) return;
  adamw_kernel<<<blocks_x(n, 1), kThreads, 0, as_cuda(stream)>>>(value, grad, m, v, working, delta,
                                                                 n, k);
  MG_CUDA(cudaGetLastError());
}

void launch_segment_copies(const SegmentCopy* copies, int64_t count, int64_t longest, float scale,
                           bool record, CudaStream stream) {
  if (count <= 0 || longest <= 0) return;
  if (count > 65535) fail("optim", "shard exchange: ", count, " segments (at most 65535)");
  const dim3 grid(blocks_x(longest, count), static_cast<unsigned>(count));
  segment_copies_kernel<<<grid, kThreads, 0, as_cuda(stream)>>>(copies, scale, record);
  MG_CUDA(cudaGetLastError());
}

}  // namespace muongpt
