// One contiguous copy of the multi-rank exchanges (optim/shard_plan.h builds the lists), in a
// header without the config types so that nvcc can take it (optim/optimizer_cuda.cu runs the
// lists with one kernel; the CPU optimizer with run_copies()). Per element j:
//   v = src[j] · scale;  delta[j] = v − dst[j] (when delta and the run records);  dst[j] = v;
//   working[j] = bf16(v) (when working).
#pragma once

#include <cstdint>

namespace muongpt {

struct SegmentCopy {
  const float* src = nullptr;
  float* dst = nullptr;
  int64_t n = 0;
  float* delta = nullptr;       // ΔW of the values replaced (telemetry), or null
  uint16_t* working = nullptr;  // the bf16 working copy of what is written, or null
};

}  // namespace muongpt
