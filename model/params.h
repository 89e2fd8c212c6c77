// The parameter table: every tensor's name, shape and initialisation, in a fixed order (embed,
// then each block, then the final norm and the head). The names and the order are an interface:
// routing rules, telemetry, checkpoints and tools/reference/model.py use them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "model/config.h"

namespace muongpt {

enum class Init { normal, uniform, zero, ones };

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  Init init = Init::zero;
  double scale = 0;  // std for normal, bound for uniform

  int64_t numel() const;
  std::string shape_str() const;  // "[768, 3072]"
  std::string init_str() const;   // "N(0, 1)", "U(±0.0312)", "zero", "ones"
};

std::vector<ParamSpec> param_specs(const ModelConfig& cfg);
int64_t param_count(const std::vector<ParamSpec>& specs);
// Index of the parameter called `name`, or -1.
int find_param(const std::vector<ParamSpec>& specs, std::string_view name);

// Where one parameter lives, for the optimizer and the telemetry: its fp32 values and gradient
// (same shape, contiguous, row-major) in the model's memory.
struct ParamSlot {
  std::string name;
  std::vector<int64_t> shape;
  float* value = nullptr;  // fp32 master weights, updated in place
  float* grad = nullptr;   // the step's gradient; reduce_gradients() averages it over the ranks
  Device device = Device::cpu;
  // CUDA bf16 training only: the bf16 working copy the forward reads, rewritten from `value`
  // after every update (null: the model reads the fp32 values directly).
  uint16_t* working_bf16 = nullptr;
  // GPU only: the stream the model queues its work on; the optimizer queues its own there too,
  // so that the two stay ordered without device-wide synchronisation (null: the legacy stream).
  CudaStream stream = nullptr;

  int64_t numel() const;
};

// The FLOP count of a training step per token (docs/bench.md, "The FLOP count"): 6·N + 6·L·T·d,
// N the parameters that take part in a matrix product (every one but the embedding, and the
// head only with its vocab_size used rows), T the sequence length.
int64_t matmul_param_count(const ModelConfig& cfg, const std::vector<ParamSpec>& specs);
double train_flops_per_token(const ModelConfig& cfg, const std::vector<ParamSpec>& specs,
                             int64_t seq);

// Pointers to each parameter inside one flat buffer laid out in param_specs() order (null for
// parameters the config does not have, e.g. gains when norm_gains = false).
template <typename T>
struct BlockWeights {
  T *attn_norm = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
  T *mlp_norm = nullptr, *w1 = nullptr, *w3 = nullptr, *w2 = nullptr;  // w3: swiglu only
};
template <typename T>
struct GptWeights {
  T *embed = nullptr, *final_norm = nullptr, *head = nullptr;
  std::vector<BlockWeights<T>> blocks;
};
// base may be null (every pointer is then null: used while an arena is only being counted).
template <typename T>
GptWeights<T> bind_weights(const ModelConfig& cfg, const std::vector<ParamSpec>& specs, T* base);

// Fills `out` (numel values) with the spec's initialisation drawn from `rng`.
template <typename T>
void init_param(const ParamSpec& spec, T* out, Rng& rng);

}  // namespace muongpt
