// The GPT on the GPU: the same model, parameter table and math as Gpt<T> (model/gpt.h), with the
// ops of model/ops/*.cu and the GEMMs of core/gemm_cuda.h. Two precisions, chosen at run time:
//   bf16  mixed precision for training: fp32 master weights (what the optimizer updates and
//         checkpoints save), a bf16 working copy of them that the forward and backward read,
//         activations and activation gradients stored in bf16, every GEMM and kernel accumulating
//         in fp32, per-row statistics (rstd, lse, losses) in fp32, weight gradients accumulated
//         in fp32.
//   fp32  the debugging mode: everything in fp32 (the masters are the working weights), so the
//         GPU path can be compared with the CPU reference to float round-off.
// docs/numerics.md, "The GPU model", describes the memory layout and the numerics.
//
// One device arena, planned from the config at construction, holds everything: fp32 masters and
// fp32 gradients (each one flat buffer in param_specs() order, like Gpt's params_flat()), the
// working copy, every activation the backward needs, and scratch. Nothing is allocated on the
// device after construction (the constructor also makes the first cuBLASLt call and the first
// gradient-norm reduction, which allocate their per-stream workspaces).
//
// This header needs no CUDA headers (the storage type stays inside model/gpt_cuda.cpp). In a build
// without CUDA the constructor throws an Error saying so.
//
// Usage (trainer):
//   GptCuda model(cfg, B, T, Precision::bf16);
//   print(model.describe_memory());
//   model.init_params(seed);                              // or set_params_from_host(checkpoint)
//   auto opt = make_cuda_optimizer(routes, model.param_slots_cuda(), cfg.optim, nullptr,
//                                  {.stream = model.stream()});
//   for each step: model.zero_grads();
//                  for each micro-batch: loss = model.forward(idx, targets); model.backward(1/k);
//                  opt->reduce_gradients(false); opt->step(s, lr);   // rewrites the working copy
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/params.h"
#include "optim/optimizer.h"

namespace muongpt {

// Storage precision of the GPU model's working weights, activations and activation gradients.
enum class Precision : uint8_t { fp32, bf16 };
std::string_view precision_name(Precision p);  // "fp32" | "bf16"
// "fp32" or "bf16"; anything else is an Error naming `where`.
Precision precision_from_name(std::string_view name, const std::string& where);

// How the GPU model computes causal attention:
//   straightforward  batched cuBLASLt GEMMs around a softmax kernel, the [B, H, T, T] scores and
//                    probabilities in memory (model/ops/attention.h); every precision and head dim
//   flash            the fused kernels of model/ops/flash_attention.h: nothing of size T × T in
//                    memory; bf16 only, head dims 64 and 128
enum class Attention : uint8_t { straightforward, flash };
std::string_view attention_name(Attention a);  // "straightforward" | "flash"
// "straightforward" or "flash"; anything else is an Error naming `where`.
Attention attention_from_name(std::string_view name, const std::string& where);

// Where the arena's bytes go (each part includes the alignment padding in front of its buffers,
// so the parts add up to the arena exactly). The cuBLASLt workspace (32 MiB per stream) and the
// gradient-norm scratch live outside the arena.
struct GpuMemory {
  size_t params = 0;       // fp32 master weights [P]
  size_t grads = 0;        // fp32 gradients [P]
  size_t working = 0;      // bf16 working copy [P] (0 in fp32 mode)
  size_t activations = 0;  // token ids, what the backward reads, logits, per-row statistics
  size_t scratch = 0;      // shared across layers: attention scores, gradient buffers, ...
  size_t total() const { return params + grads + working + activations + scratch; }
  // "GPU arena 1234.5 MiB: params 474.6 MiB, grads 474.6 MiB, ..." (one line).
  std::string describe() const;
};

class GptCuda {
 public:
  // batch B and sequence length T (≤ cfg.seq_len) fix the activation buffers. Runs on the
  // current CUDA device. Without a stream the model creates (and owns) one; with one, every
  // kernel, GEMM and copy is queued on it (nullptr = the legacy default stream; a stream passed in
  // must outlive the model). Errors: no GPU, a bad shape, or not enough device memory (the message
  // gives the planned sizes), Attention::flash with fp32 or a head dim it does not take.
  GptCuda(const ModelConfig& cfg, int64_t batch, int64_t seq, Precision precision,
          Attention attention = Attention::straightforward);
  GptCuda(const ModelConfig& cfg, int64_t batch, int64_t seq, Precision precision,
          CudaStream stream, Attention attention = Attention::straightforward);
  ~GptCuda();
  GptCuda(const GptCuda&) = delete;
  GptCuda& operator=(const GptCuda&) = delete;

  const ModelConfig& config() const;
  int64_t batch() const;
  int64_t seq() const;
  Precision precision() const;
  Attention attention() const;
  CudaStream stream() const;
  size_t arena_bytes() const;
  const GpuMemory& memory() const;
  std::string describe_memory() const { return memory().describe(); }

  const std::vector<ParamSpec>& specs() const;
  int find(std::string_view name) const;  // index of a parameter by name, or -1
  // Device views (Device::cuda): fp32 masters and fp32 gradients, per parameter and flat [P].
  Tensor param(size_t i) const;
  Tensor grad(size_t i) const;
  Tensor params_flat() const;
  Tensor grads_flat() const;
  // [P] the weights the forward reads: the bf16 working copy (DType::bf16), or in fp32 mode the
  // masters themselves.
  Tensor working_flat() const;

  // The design's initialisation: the same values as Gpt<float>::init_params(seed) (drawn on the
  // host with the same code, then uploaded). Also refreshes the working copy.
  void init_params(uint64_t seed);
  // values: [P] host floats in param_specs() order (Gpt::params_flat(), a checkpoint). Uploads the
  // masters and refreshes the working copy. Synchronous.
  void set_params_from_host(const float* values);
  void params_to_host(float* out) const;  // [P] masters; synchronous
  void grads_to_host(float* out) const;   // [P] gradients; synchronous
  // Working copy ← masters (fp32 → bf16, rounding to nearest even like float_to_bf16); nothing
  // in fp32 mode. The CUDA optimizer rewrites the copy itself after each update (ParamSlot::
  // working_bf16), so this is only for masters changed behind its back.
  void sync_working_weights();

  // idx, targets: [B, T] host token ids in [0, vocab_size); ids out of range are an Error
  // (checked on the host before anything is uploaded). Runs the forward on the stream, waits for
  // it, and returns the mean cross-entropy (summed in double on the device, in a fixed order).
  // Keeps what the backward needs.
  double forward(const int32_t* idx, const int32_t* targets);
  // Accumulates d(loss_scale · loss)/dθ of the last forward into the fp32 gradients (so
  // micro-batches add up; zero_grads() starts a step). Asynchronous on the stream. Consumes the
  // logits and (straightforward attention) the attention probabilities: they are overwritten by
  // their gradients, so one backward per forward.
  void backward(float loss_scale = 1.f);
  // [B·T, Vp] the head's output of the last forward before the soft-cap, in the storage type
  // (device view, all Vp columns; only the first vocab_size are logits). Valid until backward().
  Tensor logits() const;
  // [B·T, vocab_size] the soft-capped logits of the last forward, like Gpt::logits(), on the host
  // (the cap applied in fp32 on the host). Error after backward(). Synchronous.
  void logits_to_host(float* out) const;

  void zero_grads();  // asynchronous
  // Global L2 norm of all gradients: squares summed in double in a fixed order (deterministic).
  // Synchronous.
  double grad_norm() const;

  // One slot per parameter, in specs() order, for Optimizer::create / make_cuda_optimizer:
  // device pointers to the fp32 master, the fp32 gradient and (bf16 mode) the bf16 working copy
  // (working_bf16 = null in fp32 mode, where the forward reads the masters).
  std::vector<ParamSlot> param_slots_cuda() const;

  // An activation of the last forward as a device view [B·T, width] in the storage type, for
  // telemetry: "embed_out" and "final_in" (layer ignored), or per block "attn_in", "attn_out",
  // "mlp_in", "mlp_pre", "mlp_act" (Gpt<float>::kBlockActivations). Unknown names are an Error.
  Tensor activation(std::string_view kind, int64_t layer = 0) const;

  // Copies a contiguous device view (F32 or BF16, e.g. from logits(), activation(), param(),
  // working_flat()) to host floats (bf16 widened exactly). Synchronous, on the model's stream.
  void download(const Tensor& device_view, float* out) const;

  struct Impl;  // model/gpt_cuda.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace muongpt
