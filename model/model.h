// What the trainer, the optimizer, checkpoints and telemetry see of a model, whatever device it
// runs on: the CPU reference Gpt<float> (model/gpt.h) or the GPU model (model/gpt_cuda.cpp) in
// fp32 or bf16. make_model() builds either. Everything here speaks host memory except
// param_slots(), activation() and logits(), which stay where the model lives: the optimizer and
// the telemetry's linear algebra work there.
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
#include "model/profile.h"

namespace muongpt {

enum class Backend : uint8_t { cpu, cuda };

// Storage precision of the GPU model's working weights, activations and activation gradients:
//   bf16  mixed precision for training: fp32 master weights and gradients, a bf16 working copy of
//         the weights, bf16 activations, every GEMM and kernel accumulating in fp32;
//   fp32  the debugging mode: everything fp32, comparable with the CPU to float round-off.
enum class Precision : uint8_t { fp32, bf16 };
std::string_view precision_name(Precision p);  // "fp32" | "bf16"
Precision precision_from_name(std::string_view name, const std::string& where);

// How the GPU model computes causal attention:
//   straightforward  batched cuBLASLt GEMMs around a softmax kernel, the [B, H, T, T] scores and
//                    probabilities in memory (model/ops/attention.h); every precision and head dim
//   flash            the fused kernels of model/ops/flash_attention.h: nothing of size T × T in
//                    memory; bf16 only, head dims 64 and 128
enum class Attention : uint8_t { straightforward, flash };
std::string_view attention_name(Attention a);  // "straightforward" | "flash"
Attention attention_from_name(std::string_view name, const std::string& where);

struct ModelOptions {
  Backend backend = Backend::cpu;
  Precision precision = Precision::bf16;             // GPU only: the CPU model is fp32
  Attention attention = Attention::straightforward;  // GPU only
  int gpu = 0;                                       // which GPU (made current by make_model)
  // GPU only: by default the model queues its work on a stream of its own; with own_stream =
  // false, on `stream` instead (null = the legacy default stream), which must outlive it.
  bool own_stream = true;
  CudaStream stream = nullptr;
};

// Where a model's arena goes. Each part includes the alignment padding in front of its buffers,
// so the parts add up to the arena exactly.
struct MemoryPlan {
  Device device = Device::cpu;
  size_t params = 0;       // fp32 master weights [P]
  size_t grads = 0;        // fp32 gradients [P]
  size_t working = 0;      // bf16 working copy of the weights [P] (GPU bf16 only)
  size_t activations = 0;  // token ids, what the backward reads, logits, per-row statistics
  size_t scratch = 0;      // shared across layers: attention scores, gradient buffers, ...
  size_t total() const { return params + grads + working + activations + scratch; }
  // "GPU arena 1234.5 MiB: params 474.6 MiB, grads 474.6 MiB, ..." (one line).
  std::string describe() const;
};

// The shape checks every model (and the KV-cache decoder) shares. Errors name "model".
void check_batch_shape(const ModelConfig& cfg, int64_t batch, int64_t seq);
// Every id of idx and targets ([n] each; targets may be null) in [0, vocab_size); positions in
// the message count from `first_position`.
void check_token_ids(const int32_t* idx, const int32_t* targets, int64_t n, int64_t vocab_size,
                     int64_t first_position = 0);

// One activation that each block keeps (and the telemetry measures): its name and its width.
struct BlockActivation {
  std::string_view name;
  int64_t width;  // d_model, or the MLP width F
};
// Every block's activations for this config, in forward order (the telemetry's order): attn_in,
// attn_out, mlp_in, mlp_pre, then for swiglu mlp_up (m·w3ᵀ) and mlp_gate (silu(mlp_pre)), then
// mlp_act (what w2 multiplies).
std::vector<BlockActivation> block_activations(const ModelConfig& cfg);

class Model {
 public:
  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const ModelOptions& options() const { return options_; }
  const std::vector<ParamSpec>& specs() const { return specs_; }
  int64_t batch() const { return B_; }
  int64_t seq() const { return T_; }
  int64_t tokens() const { return B_ * T_; }

  virtual Device device() const = 0;         // where parameters and activations live
  virtual std::string describe() const = 0;  // "cpu", "cuda:0 bf16 flash"
  virtual const MemoryPlan& memory_plan() const = 0;
  virtual CudaStream stream() const { return nullptr; }
  // The device's dense peak in TFLOP/s at the model's precision (gpu_peak_tflops); 0 = unknown.
  virtual double peak_tflops() const { return 0; }

  // One slot per parameter in specs() order, pointing into the model's memory.
  virtual std::vector<ParamSlot> param_slots() = 0;
  // The design's initialisation (init_param over specs() with one generator, as Gpt does).
  void init_params(uint64_t seed);
  // values: [P] host floats in specs() order (a checkpoint's weights).
  virtual void set_params(const float* values) = 0;
  // Every parameter and every gradient as [P] host floats, valid until the next call of the same
  // function (the GPU model downloads into buffers it keeps).
  virtual const float* params_host() = 0;
  virtual const float* grads_host() = 0;

  // idx, targets: [B, T] host token ids in [0, vocab_size). The mean cross-entropy of the batch;
  // keeps what the backward needs.
  virtual double forward(const int32_t* idx, const int32_t* targets) = 0;
  // Adds d(loss_scale · loss)/dθ of the last forward to the gradients (micro-batches add up).
  virtual void backward(float loss_scale = 1.f) = 0;
  virtual void zero_grads() = 0;
  virtual void scale_grads(float factor) = 0;  // clipping
  // Name of the first parameter whose gradient (or value) holds a NaN or an Inf, or "".
  virtual std::string first_nonfinite(bool grads) = 0;
  virtual void synchronize() {}  // waits for queued GPU work (timing); nothing on the CPU
  // The per-op profile's clock (model/profile.h; null: none): forward and backward mark each
  // kind of op on it.
  virtual void set_op_clock(OpClock* clock) = 0;

  // An activation of the last forward as [B·T, width] in the model's memory and storage type:
  // "embed_out", "final_in" (layer ignored), or per block a name of block_activations(config()).
  virtual Tensor activation(std::string_view kind, int64_t layer) const = 0;
  // The head's output of the last forward in the model's memory, [B·T, columns]: on the CPU the
  // soft-capped logits [N, V], on the GPU the raw head output [N, Vp] before the cap. backward()
  // turns it into its gradient (padded columns 0).
  virtual Tensor logits() const = 0;
  // [B·T, vocab_size] the soft-capped logits of the last forward as host floats. Error after
  // backward(), which consumed them. Synchronous.
  virtual void logits_to_host(float* out) const = 0;

 protected:
  // Checks the config and the batch shape.
  Model(const ModelConfig& cfg, int64_t batch, int64_t seq, const ModelOptions& options);

  ModelConfig cfg_;
  ModelOptions options_;
  std::vector<ParamSpec> specs_;
  int64_t B_, T_;  // batch and sequence length
};

// The arena the model of make_model() would take, planned without allocating anything (a GPU
// plan needs a visible GPU).
MemoryPlan plan_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                      const ModelOptions& options = {});

// Error(where, "... needs X GiB, Y GiB available") unless the plan plus `other_bytes` (what the
// caller will need besides on the same device: optimizer state, telemetry) fits there.
void check_model_fits(const MemoryPlan& plan, size_t other_bytes, const std::string& where);

// The model the options ask for, for micro-batch B and sequence length T (≤ cfg.seq_len); its
// plan must fit in the memory available, or nothing is allocated.
// Errors: a bad shape, no GPU (or a build without CUDA) for Backend::cuda, flash attention with
// fp32 or a head dim it does not take, "needs X GiB, Y GiB available".
std::unique_ptr<Model> make_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                  const ModelOptions& options = {});

}  // namespace muongpt
