// The kernels of the fused causal attention (model/ops/flash_attention.h), in a header so that the
// same source also compiles on the host against tests/emulation/cuda_emulation.h (with
// MUONGPT_CUDA_EMULATION defined), a model of the few CUDA primitives used here: threads as
// fibers, __syncthreads, warp shuffles, ldmatrix and the m16n8k16 product. The emulation test
// runs these kernels on the CPU against the reference attention in every CI run; the GPU tests
// run them on the device. Included by model/ops/flash_attention.cu and that test only.
//
// Every kernel runs 4 warps per block; each warp owns 16 rows of the block's 64 (queries in the
// forward and the dq kernel, keys in the dk/dv kernel) and computes with the tensor cores'
// m16n8k16 product: A is a 16 × 16 bf16 fragment, B a 16 × 8 one, the 16 × 8 fp32 accumulator
// C is 4 registers per lane. Lane l holds C rows g = l/4 and g + 8, columns 2(l%4) and 2(l%4) + 1
// (PTX ISA, "mma.m16n8k16"); two neighbouring accumulator tiles are, lane for lane, the A
// fragment of the next product (the FlashAttention-2 register trick), which is how P and dS go
// from one product into the next without shared memory.
//
// Operands reach the fragments from shared memory through ldmatrix: a tile stored row-major as
// [rows][dh] (+8 elements of padding per row, so the 8 rows one ldmatrix reads sit in distinct
// banks) gives
//   A = the tile itself (16 rows × 16 columns)          load_a
//   B = the tile's transpose, n = rows (x·tileᵀ)       load_b_t     (ldmatrix)
//   B = the tile, k = rows (x·tile)                    load_b       (ldmatrix .trans)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#ifdef MUONGPT_CUDA_EMULATION
// The includer has included tests/emulation/cuda_emulation.h.
#define MG_FLASH_SMEM(name) uint4* name = ::muongpt::emulation::dynamic_smem()
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/ops/ops_cuda.cuh"
#define MG_FLASH_SMEM(name) extern __shared__ uint4 name[]
#endif

namespace muongpt {
namespace {  // internal linkage: each including file (the .cu, the emulation test) has its own

using namespace ops_cuda;
using bf16 = __nv_bfloat16;

constexpr int kThreads = 128;  // 4 warps
constexpr int kRows = 64;      // rows per block: 16 per warp
constexpr int kKeyTile = 64;   // keys per tile (forward and dq) = rows of the dk/dv block
constexpr int kPad = 8;        // bf16 elements of padding per shared-memory row (16 bytes)
constexpr float kLog2e = 1.4426950408889634f;

// ---- tensor-core fragments ----------------------------------------------------------------------

// Four 8 × 8 bf16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of matrix i.
// Without .trans lane l receives, in r[i], row l/4 and columns 2(l%4), 2(l%4) + 1 of matrix i.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16* p) {
#ifdef MUONGPT_CUDA_EMULATION
  emulation::ldmatrix_x4(r, p, false);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p))));
#endif
}

// The same with .trans: lane l receives rows 2(l%4), 2(l%4) + 1 of column l/4.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16* p) {
#ifdef MUONGPT_CUDA_EMULATION
  emulation::ldmatrix_x4(r, p, true);
#else
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p))));
#endif
}

// c += a · b for one 16 × 8 tile (bf16 operands, fp32 accumulators).
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#ifdef MUONGPT_CUDA_EMULATION
  emulation::mma_bf16(c, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// A fragment of rows r0..r0+15, columns c0..c0+15 of a row-major shared tile with row stride ld.
// ldmatrix's four 8 × 8 matrices are (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15):
// a0a1, a2a3, a4a5, a6a7 of the m16n8k16 A layout.
__device__ __forceinline__ void load_a(uint32_t a[4], const bf16* tile, int ld, int r0, int c0) {
  const int lane = threadIdx.x % kWarp;
  ldmatrix_x4(a, tile + (r0 + (lane & 15)) * ld + c0 + (lane >> 4) * 8);
}

// B fragments of x · tileᵀ for two n-tiles: n = tile rows n0..n0+15, k = tile columns k0..k0+15.
// Matrices (rows n0+0-7, cols k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15): b[0..1]
// is the n-tile n0, b[2..3] the n-tile n0 + 8. (Without .trans lane l gets stored row l/4,
// columns 2(l%4), 2(l%4)+1: n = l/4, k = 2(l%4) + {0, 1}, the B layout.)
__device__ __forceinline__ void load_b_t(uint32_t b[4], const bf16* tile, int ld, int n0, int k0) {
  const int lane = threadIdx.x % kWarp, mat = lane >> 3;
  ldmatrix_x4(b, tile + (n0 + (mat >> 1) * 8 + (lane & 7)) * ld + k0 + (mat & 1) * 8);
}

// B fragments of x · tile for two n-tiles: k = tile rows k0..k0+15, n = tile columns n0..n0+15.
// Matrices (rows k 0-7, cols n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15); with
// .trans lane l gets stored rows 2(l%4) + {0, 1}, column l/4: k = 2(l%4) + {0, 1}, n = l/4.
__device__ __forceinline__ void load_b(uint32_t b[4], const bf16* tile, int ld, int k0, int n0) {
  const int lane = threadIdx.x % kWarp, mat = lane >> 3;
  ldmatrix_x4_trans(b, tile + (k0 + (mat & 1) * 8 + (lane & 7)) * ld + n0 + (mat >> 1) * 8);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo; nearest even
  return *reinterpret_cast<const uint32_t*>(&v);
}

// The A fragment (16 rows × 16 columns, k = columns 16j..16j+15) made of accumulator tiles 2j and
// 2j + 1 (columns 16j..16j+7 and 16j+8..16j+15), rounded to bf16.
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
  a[0] = pack_bf16(lo[0], lo[1]);  // row g,     k 2(l%4) + {0, 1}
  a[1] = pack_bf16(lo[2], lo[3]);  // row g + 8
  a[2] = pack_bf16(hi[0], hi[1]);  // row g,     k + 8
  a[3] = pack_bf16(hi[2], hi[3]);  // row g + 8, k + 8
}

// Which matrix of a shared tile an mma_tile product takes as B.
enum class BFrom { tile_transposed, tile };  // x · tileᵀ (tile rows = n), x · tile (rows = k)

// acc[N/8][4] += A (16 × K, fragments a[K/16]) · B (K × N) from a shared tile.
template <int K, int N, BFrom kB>
__device__ __forceinline__ void mma_tile(float acc[][4], const uint32_t a[][4], const bf16* tile,
                                         int ld) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk)
#pragma unroll
    for (int nn = 0; nn < N / 16; ++nn) {
      uint32_t b[4];
      if constexpr (kB == BFrom::tile_transposed)
        load_b_t(b, tile, ld, nn * 16, kk * 16);
      else
        load_b(b, tile, ld, kk * 16, nn * 16);
      mma(acc[2 * nn], a[kk], b);
      mma(acc[2 * nn + 1], a[kk], b + 2);
    }
}

// A fragments of a warp's 16 rows (starting at r0) of a shared tile, all K columns.
template <int K>
__device__ __forceinline__ void load_rows(uint32_t a[][4], const bf16* tile, int ld, int r0) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) load_a(a[kk], tile, ld, r0, kk * 16);
}

// Accumulator tiles (16 × N) → A fragments (16 × N as k), rounded to bf16.
template <int N>
__device__ __forceinline__ void acc_to_rows(uint32_t a[][4], const float acc[][4]) {
#pragma unroll
  for (int j = 0; j < N / 16; ++j) acc_to_a(a[j], acc[2 * j], acc[2 * j + 1]);
}

template <int N>
__device__ __forceinline__ void zero(float acc[][4]) {
#pragma unroll
  for (int j = 0; j < N / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
}

// ---- global ↔ shared ----------------------------------------------------------------------------

// rows [r0, r0 + R) of a [T, D] matrix with row stride `stride` (elements) → shared [R][D + kPad];
// rows at or past T are zeros.
template <int R, int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, int64_t stride, int r0,
                                          int T_) {
  constexpr int kChunks = D / 8;  // 16-byte pieces per row
#pragma unroll 4
  for (int i = threadIdx.x; i < R * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < T_) v = *reinterpret_cast<const uint4*>(src + int64_t(r0 + r) * stride + c);
    *reinterpret_cast<uint4*>(dst + r * (D + kPad) + c) = v;
  }
}

// A warp's accumulator rows (16 × D, rows r0.. of the matrix) × `mul` → global rows with stride
// `stride`, rows at or past T skipped. mul[0] for row g, mul[1] for row g + 8.
template <int D>
__device__ __forceinline__ void store_rows(bf16* dst, int64_t stride, const float acc[][4], int r0,
                                           int T_, const float mul[2]) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = r0 + lane / 4 + half * 8;
    if (r >= T_) continue;
    bf16* row = dst + int64_t(r) * stride;
#pragma unroll
    for (int j = 0; j < D / 8; ++j) {
      const int c = j * 8 + 2 * (lane % 4);
      *reinterpret_cast<__nv_bfloat162*>(row + c) =
          __floats2bfloat162_rn(acc[j][2 * half] * mul[half], acc[j][2 * half + 1] * mul[half]);
    }
  }
}

// Per-(b, h) bases: q, k, dq, dk, lse, delta are [B, H, T, ...]; v, y, dy, dv are [B, T, H, dh].
struct Heads {
  int64_t head_major;    // offset of (b, h) in [B, H, T, dh]
  int64_t token_major;   // offset of (b, h) in [B, T, H, dh]
  int64_t rows;          // offset of (b, h) in [B, H, T]
  int64_t token_stride;  // H·dh: row stride of the token-major layout
};

__device__ __forceinline__ Heads heads_of(int T_, int H, int D) {
  const int64_t bh = blockIdx.y, b = bh / H, h = bh % H;
  return {bh * T_ * D, (b * T_ * H + h) * D, bh * T_, int64_t(H) * D};
}

// ---- forward -----------------------------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(bf16* y, float* lse, const bf16* q, const bf16* k, const bf16* v, int T_,
                         int H, float scale_log2) {
  MG_FLASH_SMEM(smem);
  constexpr int ld = D + kPad;
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sK = sQ + kRows * ld;
  bf16* sV = sK + kKeyTile * ld;
  const Heads at = heads_of(T_, H, D);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // the longest rows start first
  const int row = q0 + warp * 16 + lane / 4;            // this lane's rows: row and row + 8

  load_tile<kRows, D>(sQ, q + at.head_major, D, q0, T_);
  __syncthreads();
  uint32_t qa[D / 16][4];
  load_rows<D>(qa, sQ, ld, warp * 16);

  float o[D / 8][4];
  zero<D>(o);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int key_end = min(q0 + kRows, T_);  // keys past the block's last row are all masked
  for (int k0 = 0; k0 < key_end; k0 += kKeyTile) {
    __syncthreads();  // the previous tile's readers are done
    load_tile<kKeyTile, D>(sK, k + at.head_major, D, k0, T_);
    load_tile<kKeyTile, D>(sV, v + at.token_major, at.token_stride, k0, T_);
    __syncthreads();

    float s[kKeyTile / 8][4];
    zero<kKeyTile>(s);
    mma_tile<D, kKeyTile, BFrom::tile_transposed>(s, qa, sK, ld);  // S = q kᵀ
    // Scaled into base 2 and masked (u > t, u ≥ T); every row sees key k0 ≤ its position live,
    // so the row max below is finite.
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kKeyTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int u = k0 + j * 8 + 2 * (lane % 4) + (e & 1), t = row + (e >> 1) * 8;
        s[j][e] = (u <= t && u < T_) ? s[j][e] * scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
      }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the 4 lanes of a quad share a row
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(kFullMask, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(kFullMask, mx[h], 2));
      const float m_new = fmaxf(m[h], mx[h]);
      alpha[h] = exp2f(m[h] - m_new);  // 0 on the first tile (m = −∞)
      m[h] = m_new;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int j = 0; j < kKeyTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - m[e >> 1]);  // masked: 2^−∞ = 0
        l[e >> 1] += s[j][e];
      }
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[j][e] *= alpha[e >> 1];
    uint32_t pa[kKeyTile / 16][4];
    acc_to_rows<kKeyTile>(pa, s);
    mma_tile<kKeyTile, D, BFrom::tile>(o, pa, sV, ld);  // y += P̃ v
  }

  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(kFullMask, l[h], 1);
    l[h] += __shfl_xor_sync(kFullMask, l[h], 2);
    inv[h] = 1.f / l[h];
    const int t = row + h * 8;
    if (lane % 4 == 0 && t < T_) lse[at.rows + t] = m[h] + log2f(l[h]);
  }
  store_rows<D>(y + at.token_major, at.token_stride, o, q0 + warp * 16, T_, inv);
}

// ---- backward ----------------------------------------------------------------------------------

// delta[b, h, t] = Σ_c dy[b, t, h, c] · y[b, t, h, c]: one warp per (b, t, h) row.
__global__ void flash_delta_kernel(float* delta, const bf16* dy, const bf16* y, int64_t rows,
                                   int T_, int H, int D) {
  const int lane = threadIdx.x % kWarp;
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (r >= rows) return;  // uniform per warp
  const bf16 *a = dy + r * D, *b = y + r * D;
  float sum = 0.f;
  for (int c = lane; c < D; c += kWarp) sum += to_f32(a[c]) * to_f32(b[c]);
  sum = warp_sum(sum);
  const int64_t h = r % H, bt = r / H, t = bt % T_, bb = bt / T_;  // r = (b·T + t)·H + h
  if (lane == 0) delta[(bb * H + h) * T_ + t] = sum;
}

// dk, dv for one block of 64 keys (16 per warp), over the query tiles of QT rows from the
// diagonal on. The warp's rows are keys, its columns queries: Sᵀ = k qᵀ, Pᵀ, dPᵀ = v dyᵀ,
// dSᵀ = Pᵀ ⊙ (dPᵀ − delta), dv += Pᵀ dy, dk += dSᵀ q.
template <int D, int QT>
__global__ void __launch_bounds__(kThreads)
    flash_dkdv_kernel(bf16* dk, bf16* dv, const bf16* dy, const float* lse, const float* delta,
                      const bf16* q, const bf16* k, const bf16* v, int T_, int H, float scale,
                      float scale_log2) {
  MG_FLASH_SMEM(smem);
  constexpr int ld = D + kPad;
  bf16* sK = reinterpret_cast<bf16*>(smem);
  bf16* sV = sK + kRows * ld;
  bf16* sQ = sV + kRows * ld;
  bf16* sDy = sQ + QT * ld;
  float* sLse = reinterpret_cast<float*>(sDy + QT * ld);
  float* sDelta = sLse + QT;
  const Heads at = heads_of(T_, H, D);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int k0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // the longest columns start first
  const int key = k0 + warp * 16 + lane / 4;            // this lane's rows: key and key + 8

  load_tile<kRows, D>(sK, k + at.head_major, D, k0, T_);
  load_tile<kRows, D>(sV, v + at.token_major, at.token_stride, k0, T_);
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  zero<D>(dk_acc);
  zero<D>(dv_acc);
  for (int t0 = k0; t0 < T_; t0 += QT) {  // query tiles before k0 see none of these keys
    __syncthreads();
    load_tile<QT, D>(sQ, q + at.head_major, D, t0, T_);
    load_tile<QT, D>(sDy, dy + at.token_major, at.token_stride, t0, T_);
    for (int i = threadIdx.x; i < QT; i += kThreads) {
      const bool live = t0 + i < T_;
      sLse[i] = live ? lse[at.rows + t0 + i] : 0.f;
      sDelta[i] = live ? delta[at.rows + t0 + i] : 0.f;
    }
    __syncthreads();

    uint32_t ka[D / 16][4];
    load_rows<D>(ka, sK, ld, warp * 16);
    float p[QT / 8][4];
    zero<QT>(p);
    mma_tile<D, QT, BFrom::tile_transposed>(p, ka, sQ, ld);  // Sᵀ = k qᵀ
#pragma unroll
    for (int j = 0; j < QT / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = j * 8 + 2 * (lane % 4) + (e & 1), t = t0 + i, u = key + (e >> 1) * 8;
        p[j][e] = (u <= t && t < T_) ? exp2f(p[j][e] * scale_log2 - sLse[i]) : 0.f;
      }
    uint32_t pa[QT / 16][4];
    acc_to_rows<QT>(pa, p);
    mma_tile<QT, D, BFrom::tile>(dv_acc, pa, sDy, ld);  // dv += Pᵀ dy

    uint32_t va[D / 16][4];
    load_rows<D>(va, sV, ld, warp * 16);
    float ds[QT / 8][4];
    zero<QT>(ds);
    mma_tile<D, QT, BFrom::tile_transposed>(ds, va, sDy, ld);  // dPᵀ = v dyᵀ
#pragma unroll
    for (int j = 0; j < QT / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = j * 8 + 2 * (lane % 4) + (e & 1);
        ds[j][e] = p[j][e] * (ds[j][e] - sDelta[i]);  // masked entries: P = 0
      }
    uint32_t dsa[QT / 16][4];
    acc_to_rows<QT>(dsa, ds);
    mma_tile<QT, D, BFrom::tile>(dk_acc, dsa, sQ, ld);  // dk += dSᵀ q (scaled at the end)
  }
  const float one[2] = {1.f, 1.f}, sc[2] = {scale, scale};
  store_rows<D>(dk + at.head_major, D, dk_acc, k0 + warp * 16, T_, sc);
  store_rows<D>(dv + at.token_major, at.token_stride, dv_acc, k0 + warp * 16, T_, one);
}

// dq for one block of 64 queries (16 per warp), over the key tiles up to the diagonal:
// S = q kᵀ, P, dP = dy vᵀ, dS = P ⊙ (dP − delta), dq += dS k.
template <int D>
__global__ void __launch_bounds__(kThreads)
    flash_dq_kernel(bf16* dq, const bf16* dy, const float* lse, const float* delta, const bf16* q,
                    const bf16* k, const bf16* v, int T_, int H, float scale, float scale_log2) {
  MG_FLASH_SMEM(smem);
  constexpr int ld = D + kPad;
  bf16* sQ = reinterpret_cast<bf16*>(smem);
  bf16* sDy = sQ + kRows * ld;
  bf16* sK = sDy + kRows * ld;
  bf16* sV = sK + kKeyTile * ld;
  const Heads at = heads_of(T_, H, D);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  const int row = q0 + warp * 16 + lane / 4;

  load_tile<kRows, D>(sQ, q + at.head_major, D, q0, T_);
  load_tile<kRows, D>(sDy, dy + at.token_major, at.token_stride, q0, T_);
  float row_lse[2], row_delta[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int t = row + h * 8;
    row_lse[h] = t < T_ ? lse[at.rows + t] : 0.f;
    row_delta[h] = t < T_ ? delta[at.rows + t] : 0.f;
  }
  float dq_acc[D / 8][4];
  zero<D>(dq_acc);
  const int key_end = min(q0 + kRows, T_);
  for (int k0 = 0; k0 < key_end; k0 += kKeyTile) {
    __syncthreads();
    load_tile<kKeyTile, D>(sK, k + at.head_major, D, k0, T_);
    load_tile<kKeyTile, D>(sV, v + at.token_major, at.token_stride, k0, T_);
    __syncthreads();

    uint32_t a[D / 16][4];
    load_rows<D>(a, sQ, ld, warp * 16);
    float p[kKeyTile / 8][4];
    zero<kKeyTile>(p);
    mma_tile<D, kKeyTile, BFrom::tile_transposed>(p, a, sK, ld);  // S = q kᵀ
#pragma unroll
    for (int j = 0; j < kKeyTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int u = k0 + j * 8 + 2 * (lane % 4) + (e & 1), t = row + (e >> 1) * 8;
        p[j][e] = (u <= t && t < T_) ? exp2f(p[j][e] * scale_log2 - row_lse[e >> 1]) : 0.f;
      }
    load_rows<D>(a, sDy, ld, warp * 16);
    float ds[kKeyTile / 8][4];
    zero<kKeyTile>(ds);
    mma_tile<D, kKeyTile, BFrom::tile_transposed>(ds, a, sV, ld);  // dP = dy vᵀ
#pragma unroll
    for (int j = 0; j < kKeyTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) ds[j][e] = p[j][e] * (ds[j][e] - row_delta[e >> 1]);
    uint32_t dsa[kKeyTile / 16][4];
    acc_to_rows<kKeyTile>(dsa, ds);
    mma_tile<kKeyTile, D, BFrom::tile>(dq_acc, dsa, sK, ld);  // dq += dS k (scaled at the end)
  }
  const float sc[2] = {scale, scale};
  store_rows<D>(dq + at.head_major, D, dq_acc, q0 + warp * 16, T_, sc);
}

// ---- launch geometry (the launchers in flash_attention.cu and the emulation test) --------------

// Grid: (row blocks of 64, B·H); kThreads threads; these bytes of dynamic shared memory.
inline int64_t row_blocks(int64_t T_) {
  return (T_ + kRows - 1) / kRows;
}
constexpr size_t tile_bytes(int rows, int D) {
  return sizeof(bf16) * size_t(rows) * size_t(D + kPad);
}
// Query rows per tile of the dk/dv kernel: 64 for dh 64; 32 for dh 128, where two [16, dh] fp32
// accumulators per warp already take 128 registers per lane.
template <int D>
constexpr int kDkdvQueryTile = D == 64 ? 64 : 32;
template <int D>
constexpr size_t kForwardSmem = tile_bytes(kRows, D) + 2 * tile_bytes(kKeyTile, D);
template <int D>
constexpr size_t kDkdvSmem = 2 * tile_bytes(kRows, D) + 2 * tile_bytes(kDkdvQueryTile<D>, D) +
                             2 * sizeof(float) * kDkdvQueryTile<D>;
template <int D>
constexpr size_t kDqSmem = 2 * tile_bytes(kRows, D) + 2 * tile_bytes(kKeyTile, D);
constexpr int kDeltaWarps = 8;  // warps per block of flash_delta_kernel (one row each)

}  // namespace
}  // namespace muongpt
