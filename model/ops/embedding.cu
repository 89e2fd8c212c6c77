// Token embedding on the GPU.
//
// The backward is a scatter-add with repeated ids (the most frequent token can take a few percent
// of a batch). Float atomics would make the weight gradient depend on thread timing, so instead:
//   1. pos[i] = i, then a stable LSD radix sort (cub::DeviceRadixSort::SortPairs) of (id, pos) on
//      the id's low bits: equal ids end up adjacent, their positions still increasing.
//   2. Runs of equal ids are found in the sorted keys (a run starts where the key changes). For
//      each run, one thread per column adds the run's rows of dout to dtable[id] one after the
//      other, in increasing position: dtable[id, j] + dout[n1, j] + dout[n2, j] + ... — the very
//      sum, in the very order, of the CPU loop, so the result is bit-identical to it.
// The sort costs a few passes over 3·N words; the adds read dout once. The longest run (one id)
// bounds the latency of step 2, and the loads of a run are batched to keep several in flight.
// The alternative of one block per vocabulary row scanning all N ids costs Vp·N reads (50304 ×
// 65536 ≈ 3e9): too slow.
#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "model/ops/embedding.h"
#include "model/ops/ops_cuda.cuh"

namespace muongpt {

using namespace ops_cuda;

namespace {

constexpr int kGatherThreads = 256;
constexpr int kSumCols = 128;       // columns (threads) per block of the run-sum kernel
constexpr int64_t kSumRuns = 4096;  // blocks over sorted positions (grid-stride beyond)
constexpr int kBatch = 8;           // loads in flight per thread inside a run
constexpr size_t kScratchAlign = 256;

size_t align_up(size_t n) {
  return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign;
}

// Bits that distinguish ids in [0, vocab_rows).
int key_bits(int64_t vocab_rows) {
  int bits = 1;
  while (bits < 31 && (int64_t(1) << bits) < vocab_rows) ++bits;
  return bits;
}

size_t sort_temp_bytes(int64_t N, int64_t vocab_rows) {
  size_t bytes = 0;
  MG_CUDA(cub::DeviceRadixSort::SortPairs(
      nullptr, bytes, static_cast<const uint32_t*>(nullptr), static_cast<uint32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), int(N), 0,
      key_bits(vocab_rows)));
  return bytes;
}

void check_sizes(const char* op, int64_t N, int64_t d) {
  if (N < 0 || d <= 0) fail(op, "bad shape: ", N, " tokens of width ", d);
  if (N > INT_MAX) fail(op, N, " tokens are more than one call handles (", INT_MAX, ")");
}

// out [N, d] = table[idx[n], :]; block b copies rows b, b + gridDim.x, ...
template <typename T>
__global__ void embedding_gather_kernel(T* out, const T* table, const int32_t* idx, int64_t N,
                                        int64_t d) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* src = table + int64_t(idx[n]) * d;
    T* dst = out + n * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) dst[j] = src[j];
  }
}

__global__ void iota_kernel(int32_t* pos, int64_t N) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += int64_t(gridDim.x) * blockDim.x)
    pos[i] = int32_t(i);
}

// keys [N]: sorted ids; pos [N]: their positions, increasing within a run of equal ids.
// grid = (min(N, kSumRuns), ceil(d / kSumCols)), block = kSumCols. Block x visits sorted indices
// i = x, x + gridDim.x, ... and acts on those that start a run; thread t of block y owns column
// j = y·kSumCols + t of that run's dtable row.
template <typename T>
__global__ void embedding_run_sum_kernel(float* dtable, const T* dout, const uint32_t* keys,
                                         const int32_t* pos, int64_t N, int64_t d) {
  const int64_t j = int64_t(blockIdx.y) * kSumCols + threadIdx.x;
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    const uint32_t key = keys[i];
    if (i > 0 && keys[i - 1] == key) continue;  // inside a run that another index starts
    int64_t end = i + 1;
    while (end < N && keys[end] == key) ++end;
    if (j >= d) continue;
    float* dst = dtable + int64_t(key) * d + j;
    float acc = *dst;
    int64_t r = i;
    for (; r + kBatch <= end; r += kBatch) {  // loads first, then the adds in position order
      float v[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) v[u] = to_f32(dout[int64_t(pos[r + u]) * d + j]);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) acc += v[u];
    }
    for (; r < end; ++r) acc += to_f32(dout[int64_t(pos[r]) * d + j]);
    *dst = acc;
  }
}

}  // namespace

template <typename T>
void embedding_forward_cuda(T* out, const T* table, const int32_t* idx, int64_t N, int64_t d,
                            CudaStream stream) {
  check_sizes("embedding_forward_cuda", N, d);
  if (N == 0) return;
  const unsigned blocks = unsigned(N < 65535 ? N : 65535);
  embedding_gather_kernel<T><<<blocks, kGatherThreads, 0, stream>>>(out, table, idx, N, d);
  MG_CUDA_LAUNCH("embedding_gather_kernel");
}

size_t embedding_backward_scratch_bytes(int64_t N, int64_t vocab_rows) {
  check_sizes("embedding_backward_scratch_bytes", N, 1);
  if (vocab_rows <= 0) fail("embedding_backward_scratch_bytes", "no vocabulary rows");
  if (N == 0) return 0;
  const size_t words = align_up(sizeof(uint32_t) * size_t(N));
  return 3 * words + align_up(sort_temp_bytes(N, vocab_rows));
}

template <typename T>
void embedding_backward_cuda(float* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t d,
                             int64_t vocab_rows, void* scratch, size_t scratch_bytes,
                             CudaStream stream) {
  check_sizes("embedding_backward_cuda", N, d);
  if (vocab_rows <= 0) fail("embedding_backward_cuda", "no vocabulary rows");
  if (N == 0) return;
  const size_t need = embedding_backward_scratch_bytes(N, vocab_rows);
  if (!scratch || scratch_bytes < need)
    fail("embedding_backward_cuda", "scratch of ", scratch_bytes, " bytes, ", need, " needed");

  // Scratch: sorted keys [N] | positions [N] | sorted positions [N] | CUB temporary storage.
  const size_t words = align_up(sizeof(uint32_t) * size_t(N));
  char* base = static_cast<char*>(scratch);
  auto* keys_sorted = reinterpret_cast<uint32_t*>(base);
  auto* pos = reinterpret_cast<int32_t*>(base + words);
  auto* pos_sorted = reinterpret_cast<int32_t*>(base + 2 * words);
  void* temp = base + 3 * words;
  size_t temp_bytes = scratch_bytes - 3 * words;

  iota_kernel<<<grid_for(N, 256), 256, 0, stream>>>(pos, N);
  MG_CUDA_LAUNCH("iota_kernel");
  // Ids are non-negative, so their int32 bits sort as uint32; only the low key_bits() differ.
  MG_CUDA(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, reinterpret_cast<const uint32_t*>(idx),
                                          keys_sorted, pos, pos_sorted, int(N), 0,
                                          key_bits(vocab_rows), stream));
  const int64_t col_blocks = (d + kSumCols - 1) / kSumCols;
  if (col_blocks > 65535) fail("embedding_backward_cuda", "rows of ", d, " are too wide");
  const dim3 grid(unsigned(N < kSumRuns ? N : kSumRuns), unsigned(col_blocks));
  embedding_run_sum_kernel<T>
      <<<grid, kSumCols, 0, stream>>>(dtable, dout, keys_sorted, pos_sorted, N, d);
  MG_CUDA_LAUNCH("embedding_run_sum_kernel");
}

#define MG_INSTANTIATE(T)                                                                      \
  template void embedding_forward_cuda<T>(T*, const T*, const int32_t*, int64_t, int64_t,      \
                                          CudaStream);                                         \
  template void embedding_backward_cuda<T>(float*, const T*, const int32_t*, int64_t, int64_t, \
                                           int64_t, void*, size_t, CudaStream);
MG_INSTANTIATE(float)
MG_INSTANTIATE(__nv_bfloat16)

}  // namespace muongpt
