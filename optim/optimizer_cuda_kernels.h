// The elementwise kernels of the CUDA optimizer (optim/optimizer_cuda.cu), declared for host code
// (optim/optimizer_cuda.cpp) without CUDA headers. Each applies the per-element math of
// optim/update_math.h, which the CPU optimizer loops over, so both round identically (the .cu
// file is compiled with -fmad=false). All pointers are device memory; every launch is
// asynchronous on `stream`.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "optim/segment_copy.h"
#include "optim/update_math.h"

namespace muongpt {

// One Muon matrix of a same-shape group, as the batched kernels see it: a device array holds one
// entry per matrix, written once when the optimizer is built.
struct MuonMember {
  const float* grad;     // [rows, cols] the step's gradient
  float* buf;            // [rows, cols] momentum buffer
  float* value;          // [rows, cols] fp32 master weights
  uint16_t* working;     // [rows, cols] bf16 working copy, or null
  int64_t delta_offset;  // where its ΔW goes in the record buffer (elements)
  double lr, wd, scale;  // the route's base lr, weight decay and shape scale
};

// u[b, i] = muon_momentum_element(grad_b[i], buf_b[i], ...) for the `count` members (updating
// their buffers); u is [count, mn] fp32, the dualizer's input.
void launch_muon_momentum(const MuonMember* members, int64_t count, int64_t mn, float mu,
                          float one_minus_mu, bool ema, bool nesterov, float* u, CudaStream stream);

// value_b[i] ← muon_apply_element(value_b[i], O[b, i], decay, step) with (decay, step) =
// muon_consts(lr_b · lr_scale, wd_b, scale_b); then working_b[i] = bf16(value_b[i]) when the
// member has a working copy, and delta[offset_b + i] = new − old when `delta` is not null.
void launch_muon_apply(const MuonMember* members, int64_t count, int64_t mn, const float* O,
                       double lr_scale, float* delta, CudaStream stream);

// AdamW on n elements: adamw_element(value[i], grad[i], m[i], v[i], k), then working[i] =
// bf16(value[i]) and delta[i] = new − old for the pointers that are not null. Pass pointers offset
// to the start of a sub-range to update only that range (a rank's shard).
void launch_adamw(float* value, const float* grad, float* m, float* v, uint16_t* working,
                  float* delta, int64_t n, const AdamWConsts& k, CudaStream stream);

// The multi-rank exchanges: the `count` copies of a device table (optim/segment_copy.h, the
// same per-element rule as run_copies()), `longest` the largest n among them. ΔW is written only
// when `record` (the table's delta pointers may point into a buffer that is not in use).
void launch_segment_copies(const SegmentCopy* copies, int64_t count, int64_t longest, float scale,
                           bool record, CudaStream stream);

}  // namespace muongpt
