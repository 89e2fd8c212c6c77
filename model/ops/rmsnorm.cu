// RMSNorm on the GPU. One warp per row: lane l handles elements l, l + 32, ...; the row's sums are
// warp butterfly reductions in fp32 (so they differ from the CPU's sequential sums by fp32
// reassociation only), the per-element math is rmsnorm.h's.
#include "model/ops/ops_cuda.cuh"
#include "model/ops/rmsnorm.h"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kRowWarps = 8;  // rows (warps) per block of the row kernels

// Gain-gradient partial sums: a block covers kDgCols columns × kDgRowsPerChunk rows.
constexpr int kDgCols = 32;
constexpr int kDgRowLanes = 8;  // threads per column inside a block (blockDim.y)
constexpr int64_t kDgRowsPerChunk = 64;

// y, x: [rows, n]; g: [n] or null; rstd: [rows].
template <typename T>
__global__ void rmsnorm_forward_kernel(T* y, float* rstd, const T* x, const T* g, int64_t rows,
                                       int64_t n, float eps) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warps leave together: row is the same on all 32 lanes
  const T* xr = x + row * n;
  T* yr = y + row * n;
  float ss = 0.f;
  for (int64_t j = lane; j < n; j += kWarp) {
    const float v = to_f32(xr[j]);
    ss += v * v;
  }
  const float r = rmsnorm_rstd(warp_sum(ss), n, eps);
  if (lane == 0) rstd[row] = r;
  // Each lane reads and writes only its own j, after the reduction: y may alias x.
  for (int64_t j = lane; j < n; j += kWarp)
    yr[j] = from_f32<T>(to_f32(xr[j]) * r * (g ? to_f32(g[j]) : 1.f));
}

// dx, dy, x: [rows, n]; g: [n] or null; rstd: [rows].
template <typename T>
__global__ void rmsnorm_backward_kernel(T* dx, const T* dy, const T* x, const T* g,
                                        const float* rstd, int64_t rows, int64_t n,
                                        bool accumulate) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kRowWarps + threadIdx.x / kWarp;
  if (row >= rows) return;
  const T* dyr = dy + row * n;
  const T* xr = x + row * n;
  T* dxr = dx + row * n;
  const float r = rstd[row];
  float s = 0.f;
  for (int64_t j = lane; j < n; j += kWarp)
    s += (g ? to_f32(g[j]) : 1.f) * to_f32(dyr[j]) * to_f32(xr[j]);
  const float c = rmsnorm_backward_coef(r, warp_sum(s), n);
  // Lane-private j again, after the reduction: dx may alias dy (when !accumulate).
  for (int64_t j = lane; j < n; j += kWarp) {
    float v = rmsnorm_dx(to_f32(dyr[j]), to_f32(xr[j]), g ? to_f32(g[j]) : 1.f, r, c);
    if (accumulate) v = to_f32(dxr[j]) + v;
    dxr[j] = from_f32<T>(v);
  }
}

// partial[chunk, col] = Σ_{rows i of the chunk} dy[i, col] · x[i, col] · rstd[i].
// grid = (chunks, ceil(n / kDgCols)), block = (kDgCols, kDgRowLanes). Thread (tx, ty) sums rows
// ty, ty + kDgRowLanes, ... of its chunk; the kDgRowLanes partials are then added in ty order.
template <typename T>
__global__ void rmsnorm_dg_partial_kernel(float* partial, const T* dy, const T* x,
                                          const float* rstd, int64_t rows, int64_t n) {
  __shared__ float sh[kDgRowLanes][kDgCols];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = int64_t(blockIdx.y) * kDgCols + tx;
  const int64_t begin = int64_t(blockIdx.x) * kDgRowsPerChunk;
  const int64_t end = begin + kDgRowsPerChunk < rows ? begin + kDgRowsPerChunk : rows;
  float acc = 0.f;
  if (col < n)
    for (int64_t i = begin + ty; i < end; i += kDgRowLanes)
      acc += to_f32(dy[i * n + col]) * to_f32(x[i * n + col]) * rstd[i];
  sh[ty][tx] = acc;
  __syncthreads();  // reached by every thread (no early exit above)
  if (ty == 0 && col < n) {
    float s = sh[0][tx];
    for (int k = 1; k < kDgRowLanes; ++k) s += sh[k][tx];
    partial[int64_t(blockIdx.x) * n + col] = s;
  }
}

// dg[col] += Σ_chunk partial[chunk, col], summed in chunk order in double.
__global__ void rmsnorm_dg_finish_kernel(float* dg, const float* partial, int64_t chunks,
                                         int64_t n) {
  const int64_t col = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= n) return;
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += double(partial[c * n + col]);
  dg[col] = float(double(dg[col]) + s);
}

int64_t dg_chunks(int64_t rows) {
  return (rows + kDgRowsPerChunk - 1) / kDgRowsPerChunk;
}

void check_shape(const char* op, int64_t rows, int64_t n) {
  if (rows < 0 || n <= 0) fail(op, "bad shape: ", rows, " rows of ", n);
  if ((rows + kRowWarps - 1) / kRowWarps > 0x7fffffff) fail(op, rows, " rows are too many");
}

}  // namespace

int64_t rmsnorm_backward_scratch_floats(int64_t rows, int64_t n) {
  return dg_chunks(rows) * n;
}

template <typename T>
void rmsnorm_forward_cuda(T* y, float* rstd, const T* x, const T* g, int64_t rows, int64_t n,
                          float eps, CudaStream stream) {
  check_shape("rmsnorm_forward_cuda", rows, n);
  if (rows == 0) return;
  const unsigned blocks = unsigned((rows + kRowWarps - 1) / kRowWarps);
  rmsnorm_forward_kernel<T><<<blocks, kRowWarps * kWarp, 0, stream>>>(y, rstd, x, g, rows, n, eps);
  MG_CUDA_LAUNCH("rmsnorm_forward_kernel");
}

template <typename T>
void rmsnorm_backward_cuda(T* dx, float* dg, const T* dy, const T* x, const T* g, const float* rstd,
                           int64_t rows, int64_t n, bool accumulate, float* scratch,
                           CudaStream stream) {
  check_shape("rmsnorm_backward_cuda", rows, n);
  if (rows == 0) return;
  if (dg) {  // first: it reads dy, which dx may overwrite
    if (!scratch) fail("rmsnorm_backward_cuda", "a gain gradient needs the scratch buffer");
    const int64_t chunks = dg_chunks(rows), col_tiles = (n + kDgCols - 1) / kDgCols;
    if (col_tiles > 65535) fail("rmsnorm_backward_cuda", "rows of ", n, " are too wide");
    rmsnorm_dg_partial_kernel<T>
        <<<dim3(unsigned(chunks), unsigned(col_tiles)), dim3(kDgCols, kDgRowLanes), 0, stream>>>(
            scratch, dy, x, rstd, rows, n);
    MG_CUDA_LAUNCH("rmsnorm_dg_partial_kernel");
    rmsnorm_dg_finish_kernel<<<grid_for(n, 256, int64_t(1) << 30), 256, 0, stream>>>(dg, scratch,
                                                                                     chunks, n);
    MG_CUDA_LAUNCH("rmsnorm_dg_finish_kernel");
  }
  const unsigned blocks = unsigned((rows + kRowWarps - 1) / kRowWarps);
  rmsnorm_backward_kernel<T>
      <<<blocks, kRowWarps * kWarp, 0, stream>>>(dx, dy, x, g, rstd, rows, n, accumulate);
  MG_CUDA_LAUNCH("rmsnorm_backward_kernel");
}

#define MG_INSTANTIATE(T)                                                                        \
  template void rmsnorm_forward_cuda<T>(T*, float*, const T*, const T*, int64_t, int64_t, float, \
                                        CudaStream);                                             \
  template void rmsnorm_backward_cuda<T>(T*, float*, const T*, const T*, const T*, const float*, \
                                         int64_t, int64_t, bool, float*, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
