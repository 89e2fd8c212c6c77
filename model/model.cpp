#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/memory.h"
#include "model/gpt.h"
#include "model/gpt_cuda.h"

namespace muongpt {

std::string_view precision_name(Precision p) {
  return p == Precision::bf16 ? "bf16" : "fp32";
}

Precision precision_from_name(std::string_view name, const std::string& where) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  fail(where, "precision '", name, "' is not one of: fp32, bf16");
}

std::string_view attention_name(Attention a) {
  return a == Attention::flash ? "flash" : "straightforward";
}

Attention attention_from_name(std::string_view name, const std::string& where) {
  if (name == "straightforward") return Attention::straightforward;
  if (name == "flash") return Attention::flash;
  fail(where, "attention '", name, "' is not one of: straightforward, flash");
}

std::string MemoryPlan::describe() const {
  const auto mib = format_gib;
  std::string s = std::string(device == Device::cuda ? "GPU" : "CPU") + " arena " + mib(total()) +
                  ": params " + mib(params) + ", grads " + mib(grads);
  if (working) s += ", working " + mib(working);
  return s + ", activations " + mib(activations) + ", scratch " + mib(scratch);
}

std::vector<BlockActivation> block_activations(const ModelConfig& cfg) {
  const int64_t d = cfg.d_model, F = cfg.mlp_width();
  std::vector<BlockActivation> acts = {
      {"attn_in", d}, {"attn_out", d}, {"mlp_in", d}, {"mlp_pre", F}};
  if (cfg.swiglu()) acts.insert(acts.end(), {{"mlp_up", F}, {"mlp_gate", F}});
  acts.push_back({"mlp_act", F});
  return acts;
}

void check_batch_shape(const ModelConfig& cfg, int64_t batch, int64_t seq) {
  cfg.validate("model config");
  if (batch <= 0 || seq <= 0 || seq > cfg.seq_len)
    fail("model", "batch ", batch, " x sequence ", seq,
         " is not possible (1 <= T <= seq_len = ", cfg.seq_len, ")");
  // The largest terms of the plan, in double: beyond this no size computed in integers can
  // overflow, and no machine has the memory anyway.
  const double d = double(cfg.d_model), F = double(cfg.mlp_width()), L = double(cfg.n_layer),
               N = double(batch) * double(seq), H = double(cfg.n_head());
  const double mlp_mats = cfg.swiglu() ? 3 : 2, mlp_acts = cfg.swiglu() ? 4 : 2;  // [F, d], [N, F]
  const double params = 2 * double(cfg.vocab_padded()) * d + L * (4 * d * d + mlp_mats * d * F);
  const double acts =
      L * (N * (12 * d + mlp_acts * F) + N * H * double(seq)) + N * double(cfg.vocab_size);
  const double bytes = 4 * (3 * params + acts);
  if (bytes > 1e15)
    fail("model", "batch ", batch, " x sequence ", seq, " of this model needs about ",
         bytes / double(1ull << 40), " TiB: more than any machine has");
}

void check_token_ids(const int32_t* idx, const int32_t* targets, int64_t n, int64_t vocab_size,
                     int64_t first_position) {
  auto bad = [&](int32_t id) { return id < 0 || id >= vocab_size; };
  for (int64_t i = 0; i < n; ++i) {
    if (bad(idx[i]) || (targets && bad(targets[i])))
      fail("model", "token id ", bad(idx[i]) ? idx[i] : targets[i], " at position ",
           first_position + i, " is outside the vocabulary [0, ", vocab_size, ")");
  }
}

Model::Model(const ModelConfig& cfg, int64_t batch, int64_t seq, const ModelOptions& options)
    : cfg_(cfg), options_(options), B_(batch), T_(seq) {
  check_batch_shape(cfg, batch, seq);
  specs_ = param_specs(cfg);
}

void Model::init_params(uint64_t seed) {
  std::vector<float> values(static_cast<size_t>(param_count(specs_)));
  Rng rng(seed);
  float* at = values.data();
  for (const ParamSpec& s : specs_) {
    init_param(s, at, rng);
    at += s.numel();
  }
  set_params(values.data());
}

namespace {

// The CPU reference model, owned or borrowed, seen through the interface.
class CpuModel final : public Model {
 public:
  CpuModel(const ModelConfig& cfg, int64_t batch, int64_t seq)
      : Model(cfg, batch, seq, {}),
        owned_(std::make_unique<Gpt<float>>(cfg, batch, seq)),
        gpt_(*owned_) {}
  explicit CpuModel(Gpt<float>& gpt) : Model(gpt.config(), gpt.batch(), gpt.seq(), {}), gpt_(gpt) {}

  Device device() const override { return Device::cpu; }
  std::string describe() const override { return "cpu"; }
  const MemoryPlan& memory_plan() const override { return gpt_.memory_plan(); }
  std::vector<ParamSlot> param_slots() override { return muongpt::param_slots(gpt_); }
  void set_params(const float* values) override {
    std::copy(values, values + gpt_.params_flat().numel(), gpt_.params_flat().data<float>());
  }
  const float* params_host() override { return gpt_.params_flat().data<float>(); }
  const float* grads_host() override { return gpt_.grads_flat().data<float>(); }

  double forward(const int32_t* idx, const int32_t* targets) override {
    const double loss = gpt_.forward(idx, targets);
    forward_done_ = true;
    return loss;
  }
  void backward(float loss_scale) override {
    gpt_.backward(loss_scale);
    forward_done_ = false;
  }
  void zero_grads() override { gpt_.zero_grads(); }
  void scale_grads(float factor) override {
    float* g = gpt_.grads_flat().data<float>();
    for (int64_t i = 0; i < gpt_.grads_flat().numel(); ++i) g[i] *= factor;
  }
  std::string first_nonfinite(bool grads) override {
    const float* flat = grads ? grads_host() : params_host();
    for (const ParamSpec& s : specs_) {
      if (!std::all_of(flat, flat + s.numel(), [](float x) { return std::isfinite(x); }))
        return s.name;
      flat += s.numel();
    }
    return "";
  }
  Tensor activation(std::string_view kind, int64_t layer) const override {
    return gpt_.activation(kind, layer);
  }
  void set_op_clock(OpClock* clock) override { gpt_.set_op_clock(clock); }
  Tensor logits() const override { return gpt_.logits(); }
  void logits_to_host(float* out) const override {
    if (!forward_done_)
      fail("model", "the logits are only available between forward() and backward()");
    const Tensor t = gpt_.logits();
    std::copy(t.data<float>(), t.data<float>() + t.numel(), out);
  }

 private:
  std::unique_ptr<Gpt<float>> owned_;
  Gpt<float>& gpt_;
  bool forward_done_ = false;
};

}  // namespace

std::unique_ptr<Model> view_cpu_model(Gpt<float>& model) {
  return std::make_unique<CpuModel>(model);
}

MemoryPlan plan_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                      const ModelOptions& options) {
  if (options.backend == Backend::cpu) return Gpt<float>::plan(cfg, batch, seq);
#ifdef MUONGPT_HAVE_CUDA
  if (cuda_device_count() == 0) fail("model", "the GPU model needs a GPU: ", describe_devices());
  cuda_set_device(options.gpu);
  return plan_gpt_cuda(cfg, batch, seq, options);
#else
  fail("model", "the GPU model needs CUDA: this muongpt was built without CUDA support");
#endif
}

void check_model_fits(const MemoryPlan& plan, size_t other_bytes, const std::string& where) {
  check_memory_fits(
      plan.device, plan.total() + other_bytes, where,
      "the model (" + plan.describe() +
          (other_bytes ? "; optimizer and telemetry " + format_gib(other_bytes) : "") + ")");
}

std::unique_ptr<Model> make_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                  const ModelOptions& options) {
  check_model_fits(plan_model(cfg, batch, seq, options), 0, "model");
  if (options.backend == Backend::cpu) return std::make_unique<CpuModel>(cfg, batch, seq);
#ifdef MUONGPT_HAVE_CUDA
  return make_gpt_cuda(cfg, batch, seq, options);
#else
  fail("model", "unreachable: no GPU model without CUDA");
#endif
}

}  // namespace muongpt
