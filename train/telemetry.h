// Rank telemetry (DESIGN.md section 4). On a telemetry step the trainer calls, in order:
//   begin();  for each micro-batch: add_activations() after the forward;
//   add_gradients() once the gradients are complete (before clipping and the optimizer);
//   snapshot_weights() just before the optimizer step;  finish() right after it.
// finish() returns one ranks.jsonl record (schema in docs/telemetry.md).
//
// The linear algebra runs where the model lives (train/spectra.h: numerics there): nothing but
// the figures leaves the GPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"
#include "train/spectra.h"

namespace muongpt {

// Which activation a weight multiplies ("blocks.3.attn_in" for blocks.3.attn.wq, "mlp_in" for w1
// and swiglu's w3, "tokens" for the embedding, "final_in" for the head), and the alternative the
// design also logs (attn_in for wo, mlp_pre for w2; empty otherwise).
std::string input_activation(const std::string& param);
std::string alt_input_activation(const std::string& param);

class Comm;

class RankTelemetry {
 public:
  // every = 0 turns telemetry off; otherwise it runs at steps 1, 2 and every multiple of it.
  // On several ranks (comm), finish() all-reduces the activation Grams and token counts, and the
  // spectra are divided among the ranks: weight i's gradient and update spectra are computed by
  // rank owner[i] only (its Muon owner, say), activation k's by rank k mod world; the pieces are
  // gathered so that every rank returns the same record. The gradients must then be the averaged
  // ones on every rank (Optimizer::reduce_gradients(true)).
  // `on_demand` builds it even with every = 0, for steps that ask for it (the criterion
  // routing's probe window).
  RankTelemetry(Model& model, int64_t every, Comm* comm = nullptr, std::vector<int> owner = {},
                bool on_demand = false);
  // After the routing changed (the criterion's decision): which rank computes each weight.
  void set_owners(std::vector<int> owner) { owner_ = std::move(owner); }

  // Bytes the telemetry holds where the model lives (0 when off).
  size_t memory_bytes() const { return spectra_ ? spectra_->memory_bytes() : 0; }
  // Its activation Grams (float64, width²) for a model, known before it is built (memory
  // planning); scratch is not counted.
  static size_t planned_bytes(const ModelConfig& cfg, int64_t every);
  bool enabled() const { return spectra_ != nullptr; }
  bool due(int64_t step) const { return every_ > 0 && (step <= 2 || step % every_ == 0); }
  void begin();
  void add_activations(Model& model, const int32_t* idx, int64_t n_tokens);
  void add_gradients(Model& model);
  // update_of(i) is ΔW = W_after − W_before of parameter i in the step just taken, in the
  // model's memory (empty when not recorded); the parameters already hold W_after.
  nlohmann::json finish(Model& model, int64_t step,
                        const std::function<std::span<const float>(size_t)>& update_of);

 private:
  bool mine(size_t param) const;

  struct Act {
    std::string key;  // "embed_out", "final_in" or "blocks.{i}.{kind}"
    std::string kind;
    int64_t layer, width;
  };
  static std::vector<Act> activations(const ModelConfig& cfg);  // the Grams, in order

  int64_t every_;
  Comm* comm_;
  std::vector<int> owner_;  // per parameter; empty: this rank computes everything
  std::vector<Act> acts_;   // Gram k of spectra_ is acts_[k]'s
  std::unique_ptr<Spectra> spectra_;
  std::vector<double> token_counts_;  // [V]
  nlohmann::json weights_;            // per-weight gradient figures, filled by add_gradients
  double seconds_ = 0;
};

}  // namespace muongpt
