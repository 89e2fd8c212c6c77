// The GPU model as its tests reach it: built through make_model (model/model.h), by default on
// the legacy default stream, and read back through the model's stream. CUDA builds only.
#pragma once

#ifdef MUONGPT_HAVE_CUDA
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cuda_util.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model.h"

namespace muongpt::testing {

inline std::unique_ptr<Model> make_gpu_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                             Precision precision,
                                             Attention attention = Attention::straightforward,
                                             bool own_stream = false) {
  return make_model(cfg, batch, seq,
                    {.backend = Backend::cuda,
                     .precision = precision,
                     .attention = attention,
                     .own_stream = own_stream,
                     .stream = nullptr});
}

// Copies a contiguous F32 or BF16 view of the model's device memory (logits(), activation(),
// working_flat()) to host floats (bf16 widened exactly). Synchronous.
inline void download(const Model& m, const Tensor& t, float* out) {
  if (t.device() != Device::cuda || !t.is_contiguous())
    fail("test", "download needs a contiguous device tensor");
  const size_t n = static_cast<size_t>(t.numel());
  if (t.dtype() == DType::f32) {
    copy_to_host(out, t.raw(), sizeof(float) * n, m.stream());
    stream_sync(m.stream());
  } else {
    std::vector<uint16_t> bits(n);
    copy_to_host(bits.data(), t.raw(), sizeof(uint16_t) * n, m.stream());
    stream_sync(m.stream());
    for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(bits[i]);
  }
}

// The flat [P] buffers behind the parameter slots: fp32 masters, fp32 gradients, and the weights
// the forward reads (the bf16 working copy, or in fp32 mode the masters themselves).
inline Tensor params_flat(Model& m) {
  return Tensor(m.param_slots()[0].value, DType::f32, {param_count(m.specs())}, Device::cuda);
}
inline Tensor grads_flat(Model& m) {
  return Tensor(m.param_slots()[0].grad, DType::f32, {param_count(m.specs())}, Device::cuda);
}
inline Tensor working_flat(Model& m) {
  const ParamSlot s = m.param_slots()[0];
  if (!s.working_bf16) return params_flat(m);
  return Tensor(s.working_bf16, DType::bf16, {param_count(m.specs())}, Device::cuda);
}

// Global L2 norm of the gradients, squares summed in double in a fixed order.
inline double grad_norm(Model& m) {
  const float* g = m.grads_host();
  double ss = 0;
  for (int64_t i = 0; i < param_count(m.specs()); ++i) ss += double(g[i]) * double(g[i]);
  return std::sqrt(ss);
}

}  // namespace muongpt::testing
#endif
