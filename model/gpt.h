// The GPT on the CPU, templated on the scalar type: float for training, double for gradient
// checks. One arena holds parameters, gradients (same layout, each one contiguous buffer in
// param_specs() order), the activations the backward needs, and scratch; nothing is allocated
// after construction.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "core/arena.h"
#include "core/error.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/mlp.h"
#include "model/model.h"
#include "model/params.h"
#include "model/profile.h"

namespace muongpt {

template <typename T>
class Gpt {
 public:
  // batch B and sequence length T (≤ cfg.seq_len) fix the activation buffers.
  Gpt(const ModelConfig& cfg, int64_t batch, int64_t seq);
  // The arena such a model would take, planned without allocating it.
  static MemoryPlan plan(const ModelConfig& cfg, int64_t batch, int64_t seq);
  Gpt(const Gpt&) = delete;
  Gpt& operator=(const Gpt&) = delete;

  const ModelConfig& config() const { return cfg_; }
  int64_t batch() const { return B_; }
  int64_t seq() const { return T_; }
  size_t arena_bytes() const { return arena_.capacity(); }
  const MemoryPlan& memory_plan() const { return mem_; }
  // The per-op profile's clock (null: none), marked at each kind of op (model/profile.h).
  void set_op_clock(OpClock* clock) { clock_ = clock; }

  const std::vector<ParamSpec>& specs() const { return specs_; }
  Tensor param(size_t i) const { return values_[i]; }
  Tensor grad(size_t i) const { return grads_[i]; }
  // Index of a parameter by name, or -1.
  int find(std::string_view name) const;
  Tensor params_flat() const { return values_flat_; }
  Tensor grads_flat() const { return grads_flat_; }

  void init_params(uint64_t seed);  // the design's initialisation
  void zero_grads();
  double grad_norm() const;  // global L2 norm of all gradients (accumulated in double)

  // idx, targets: [B, T] token ids in [0, vocab_size). Returns the mean cross-entropy and keeps
  // what the backward needs. Ids out of range are an Error.
  T forward(const int32_t* idx, const int32_t* targets);
  // Accumulates d(loss_scale · loss)/dθ of the last forward into the gradients. Consumes the
  // logits (they become their gradient).
  void backward(T loss_scale = T(1));
  // [B·T, V] soft-capped logits of the last forward (valid until backward()).
  Tensor logits() const;
  // An activation of the last forward as [B·T, width], for telemetry: "embed_out" and
  // "final_in" (layer ignored), or per block a name of block_activations(config()). Unknown
  // names (and mlp_up, mlp_gate of a relu2 model) are an Error.
  Tensor activation(std::string_view kind, int64_t layer = 0) const;

 private:
  using Block = BlockWeights<T>;
  using Weights = GptWeights<T>;
  struct LayerActs {     // what one block keeps for its backward; N = B·T rows
    T* attn_in;          // [N, d]    rmsnorm(x): feeds wq, wk, wv
    T* attn_rstd;        // [N]
    T *q, *k, *v;        // [N, d]    projections (q, k before QK-norm)
    T *q_rstd, *k_rstd;  // [N·H]
    T *q_rot, *k_rot;    // [N, d]    normed and rotated
    T* probs;            // [B, H, T, T]
    T* attn_out;         // [N, d]    feeds wo
    T* x_mid;            // [N, d]    residual stream after attention
    T* mlp_in;           // [N, d]    feeds w1
    T* mlp_rstd;         // [N]
    T* mlp_pre;          // [N, F]    m·w1ᵀ
    T* mlp_up;           // [N, F]    m·w3ᵀ (swiglu; else null)
    T* mlp_gate;         // [N, F]    silu(mlp_pre) (swiglu; else null)
    T* mlp_act;          // [N, F]    relu(mlp_pre)² or mlp_gate·mlp_up: feeds w2
    MlpActs<T> mlp() const { return {mlp_in, mlp_rstd, mlp_pre, mlp_up, mlp_gate, mlp_act}; }
  };

  struct PlanOnly {};
  Gpt(const ModelConfig& cfg, int64_t batch, int64_t seq, PlanOnly);
  void layout(Arena& arena);

  ModelConfig cfg_;
  int64_t B_, T_;
  std::vector<ParamSpec> specs_;
  MemoryPlan mem_;  // filled by layout()
  OpClock* clock_ = nullptr;
  Tensor values_flat_, grads_flat_;
  std::vector<Tensor> values_, grads_;
  Weights w_, g_;
  std::vector<LayerActs> acts_;
  std::vector<T*> resid_;                // L+1 × [N, d]: resid_[l] is block l's input
  int32_t *idx_, *targets_;              // [N]
  T *embed_raw_, *embed_rstd_;           // [N, d], [N]
  T *final_in_, *final_rstd_;            // [N, d], [N]
  T *logits_, *lse_;                     // [N, V], [N]
  T *rope_cos_, *rope_sin_;              // [T, dh/2]
  T *dx_, *da_, *dq_, *dk_, *dv_, *dy_;  // [N, d] gradient scratch
  T *dh_, *dscores_;                     // [N, F] ([2, N, F] for swiglu), [T, T]
  Arena arena_ = Arena::counting(Device::cpu);
};

extern template class Gpt<float>;
extern template class Gpt<double>;

// Slots for every parameter of a CPU model, in specs() order (the order of resolve_routing()).
std::vector<ParamSlot> param_slots(const Gpt<float>& model);
// The CPU model seen through the Model interface without taking it over (tests); the model must
// outlive the view.
std::unique_ptr<Model> view_cpu_model(Gpt<float>& model);

// The activation lookup both models (Gpt, the GPU model) share: "embed_out" and "final_in" (layer
// ignored), or a name of block_activations(cfg) in block `layer` of `acts` (whose elements have
// those members) → (buffer, width). Unknown names and blocks, and a name this config's blocks do
// not keep (mlp_up of a relu2 model), are an Error.
template <typename P, typename Acts>
std::pair<P*, int64_t> find_activation(std::string_view kind, int64_t layer, P* embed_out,
                                       P* final_in, const std::vector<Acts>& acts,
                                       const ModelConfig& cfg) {
  if (kind == "embed_out") return {embed_out, cfg.d_model};
  if (kind == "final_in") return {final_in, cfg.d_model};
  if (layer < 0 || layer >= int64_t(acts.size())) fail("model", "no block ", layer);
  const Acts& a = acts[size_t(layer)];
  for (const BlockActivation& b : block_activations(cfg)) {
    if (b.name != kind) continue;
    P* p = kind == "attn_in"    ? a.attn_in
           : kind == "attn_out" ? a.attn_out
           : kind == "mlp_in"   ? a.mlp_in
           : kind == "mlp_pre"  ? a.mlp_pre
           : kind == "mlp_up"   ? a.mlp_up
           : kind == "mlp_gate" ? a.mlp_gate
           : kind == "mlp_act"  ? a.mlp_act
                                : nullptr;
    MG_CHECK(p, "activation ", kind, " of block ", layer, " has no buffer");
    return {p, b.width};
  }
  fail("model", "unknown activation '", kind, "' (mlp = \"", cfg.mlp, "\")");
}

}  // namespace muongpt
