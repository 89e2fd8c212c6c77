// QK-norm and RoPE fused, on the GPU: for each head row of q and k,
//   y = rope(rmsnorm(x))      (rmsnorm without a gain, eps as the block norms; rope.h's rotation)
// reading the projections' layout [B, T, H, dh] (row stride d = H·dh) and writing the layout the
// attention GEMMs want, [B, H, T, dh], so one strided batched GEMM with batch B·H covers every
// head. The CPU model computes the same thing as rmsnorm_forward (N·H rows of dh) followed by
// rope_forward, and the backward as rope_backward followed by rmsnorm_backward; those are the
// reference. The normalised row is rotated in fp32 registers and rounded once when stored.
#pragma once

#include <cstdint>

#include "core/device.h"

namespace muongpt {

// q, k: [B, T, H, dh] (T storage); q_out, k_out: [B, H, T, dh]; q_rstd, k_rstd: [B, T, H] fp32
// (the CPU's [N·H] order), written. cos, sin: [≥ T, dh/2] fp32 device tables from rope_tables.
// dh must be a multiple of 4 (the half-truncated frequencies). Outputs must not alias inputs (the
// layouts differ).
template <typename T>
void qk_norm_rope_forward_cuda(T* q_out, T* k_out, float* q_rstd, float* k_rstd, const T* q,
                               const T* k, const float* cos, const float* sin, int64_t B,
                               int64_t T_, int64_t H, int64_t dh, float eps, CudaStream stream);

// dq_out, dk_out: [B, H, T, dh], the gradients w.r.t. q_out, k_out; dq, dk: [B, T, H, dh], the
// gradients w.r.t. q, k (written). q, k and the rstd are the forward's inputs and statistics.
template <typename T>
void qk_norm_rope_backward_cuda(T* dq, T* dk, const T* dq_out, const T* dk_out, const T* q,
                                const T* k, const float* q_rstd, const float* k_rstd,
                                const float* cos, const float* sin, int64_t B, int64_t T_,
                                int64_t H, int64_t dh, CudaStream stream);

}  // namespace muongpt
