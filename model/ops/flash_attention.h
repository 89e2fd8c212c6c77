// Causal attention on the GPU without the [B, H, T, T] matrices: the fused ("flash") forward and
// backward, bf16 storage, tensor cores (mma.sync m16n8k16, fp32 accumulation), head dims 64 and
// 128. The same math as attention_forward_cuda / attention_backward_cuda (model/ops/attention.h)
// with the scores, probabilities and their gradients kept on chip, 64 × 64 tiles at a time:
//   forward   per block of 64 queries, over the key tiles at or below the diagonal: S = scale·q kᵀ,
//             an online softmax (running row max m and sum l, the output rescaled when m grows),
//             y += P̃ v with P̃ = 2^(S·log2 e − m) rounded to bf16; finally y /= l and
//             lse = m + log2 l (base 2) per row, kept for the backward.
//   backward  D = Σ_c dy ⊙ y per row (a row kernel); then per block of 64 keys, over the query
//             tiles at or after the diagonal: P = 2^(S·log2 e − lse), dv += Pᵀ dy, dP = dy vᵀ,
//             dS = P ⊙ (dP − D), dk += dSᵀ q; and per block of 64 queries: dq += dS k (S, P and
//             dP recomputed). Two kernels instead of one with atomics, so the result does not
//             depend on scheduling: every output element is summed by one thread in a fixed order.
// P and dS are rounded to bf16 where they enter the tensor cores, as the straightforward version
// rounds its stored P and dS; docs/numerics.md ("Flash attention") has the tolerance.
//
// Layouts (the ones the model already has, so no head split or merge is needed):
//   q, k, dq, dk   [B, H, T, dh]  (what qk_norm_rope_forward_cuda writes and its backward reads)
//   v, y, dy, dv   [B, T, H, dh]  (the projections' layout: rows of d = H·dh)
//   lse, delta     [B, H, T] fp32
// Device pointers, 16-byte aligned; asynchronous on `stream`; nothing is allocated.
#pragma once

#include <cstdint>

#include "core/device.h"

struct __nv_bfloat16;

namespace muongpt {

// Whether the fused kernels take this head dimension (64 or 128).
bool flash_attention_supports(int64_t dh);

// y [B, T, H, dh] and lse [B, H, T] (base-2 log-sum-exp of scale·log2(e)·s per row) written.
void flash_attention_forward_cuda(__nv_bfloat16* y, float* lse, const __nv_bfloat16* q,
                                  const __nv_bfloat16* k, const __nv_bfloat16* v, int64_t B,
                                  int64_t T_, int64_t H, int64_t dh, float scale,
                                  CudaStream stream);

// dq, dk [B, H, T, dh] and dv [B, T, H, dh] written (not accumulated); y and lse from the forward;
// delta [B, H, T] fp32 scratch.
void flash_attention_backward_cuda(__nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv,
                                   float* delta, const __nv_bfloat16* dy, const __nv_bfloat16* y,
                                   const float* lse, const __nv_bfloat16* q, const __nv_bfloat16* k,
                                   const __nv_bfloat16* v, int64_t B, int64_t T_, int64_t H,
                                   int64_t dh, float scale, CudaStream stream);

}  // namespace muongpt
