// The GPU model (model/gpt_cuda.cpp, CUDA builds only): the same model, parameter table and math
// as Gpt<T> (model/gpt.h), with the ops of model/ops/*.cu and the GEMMs of core/gemm_cuda.h, in
// fp32 or bf16 mixed precision (model/model.h, Precision). docs/numerics.md, "The GPU model",
// describes its memory layout and numerics. Reach it through make_model().
#pragma once

#include <cstdint>
#include <memory>

#include "model/model.h"

namespace muongpt {

#ifdef MUONGPT_HAVE_CUDA
// Runs on the current CUDA device (make_model sets options.gpu current first).
std::unique_ptr<Model> make_gpt_cuda(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                     const ModelOptions& options);
// Its arena, planned without allocating (the current GPU answers the sort's scratch size).
MemoryPlan plan_gpt_cuda(const ModelConfig& cfg, int64_t batch, int64_t seq,
                         const ModelOptions& options);
#endif

}  // namespace muongpt
