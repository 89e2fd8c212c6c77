#include "model/params.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "core/error.h"

namespace muongpt {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t ParamSlot::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int find_param(const std::vector<ParamSpec>& specs, std::string_view name) {
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].name == name) return static_cast<int>(i);
  return -1;
}

std::string ParamSpec::shape_str() const {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

std::string ParamSpec::init_str() const {
  char buf[64];
  switch (init) {
    case Init::normal:
      std::snprintf(buf, sizeof buf, "N(0, %.4g)", scale);
      return buf;
    case Init::uniform:
      std::snprintf(buf, sizeof buf, "U(±%.4g)", scale);
      return buf;
    case Init::zero:
      return "zero";
    case Init::ones:
      return "ones";
  }
  return "?";
}

std::vector<ParamSpec> param_specs(const ModelConfig& c) {
  const int64_t d = c.d_model, f = c.mlp_width(), vp = c.vocab_padded();
  const double bound = std::sqrt(3.0) * 0.5 / std::sqrt(double(d));
  std::vector<ParamSpec> specs;
  specs.push_back({"embed.weight", {vp, d}, Init::normal, 1.0});
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    if (c.norm_gains) specs.push_back({p + "attn_norm.weight", {d}, Init::ones, 0});
    specs.push_back({p + "attn.wq", {d, d}, Init::uniform, bound});
    specs.push_back({p + "attn.wk", {d, d}, Init::uniform, bound});
    specs.push_back({p + "attn.wv", {d, d}, Init::uniform, bound});
    specs.push_back({p + "attn.wo", {d, d}, Init::zero, 0});
    if (c.norm_gains) specs.push_back({p + "mlp_norm.weight", {d}, Init::ones, 0});
    specs.push_back({p + "mlp.w1", {f, d}, Init::uniform, bound});
    // SwiGLU's linear branch, initialised like w1 (the same fan-in), and placed right after w1:
    // two adjacent [F, d] blocks let the GPU model compute m·{w1, w3}ᵀ, and their weight
    // gradients, as one batched GEMM each (as wq, wk, wv are).
    if (c.swiglu()) specs.push_back({p + "mlp.w3", {f, d}, Init::uniform, bound});
    specs.push_back({p + "mlp.w2", {d, f}, Init::zero, 0});
  }
  if (c.norm_gains) specs.push_back({"final_norm.weight", {d}, Init::ones, 0});
  specs.push_back({"head.weight", {vp, d}, Init::zero, 0});
  return specs;
}

int64_t param_count(const std::vector<ParamSpec>& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += s.numel();
  return n;
}

int64_t matmul_param_count(const ModelConfig& cfg, const std::vector<ParamSpec>& specs) {
  int64_t n = param_count(specs);
  for (const ParamSpec& s : specs)
    if (s.name == "embed.weight") n -= s.numel();
  return n - (cfg.vocab_padded() - cfg.vocab_size) * cfg.d_model;
}

double train_flops_per_token(const ModelConfig& cfg, const std::vector<ParamSpec>& specs,
                             int64_t seq) {
  return 6.0 * double(matmul_param_count(cfg, specs)) +
         6.0 * double(cfg.n_layer * seq * cfg.d_model);
}

template <typename T>
GptWeights<T> bind_weights(const ModelConfig& cfg, const std::vector<ParamSpec>& specs, T* base) {
  GptWeights<T> w;
  w.blocks.resize(static_cast<size_t>(cfg.n_layer));
  int64_t offset = 0;
  for (const ParamSpec& s : specs) {
    T* p = base ? base + offset : nullptr;
    offset += s.numel();
    const std::string& n = s.name;
    if (n == "embed.weight") {
      w.embed = p;
    } else if (n == "head.weight") {
      w.head = p;
    } else if (n == "final_norm.weight") {
      w.final_norm = p;
    } else {  // blocks.{i}.<field>
      size_t dot = n.find('.', 7);
      BlockWeights<T>& b = w.blocks.at(std::stoull(n.substr(7, dot - 7)));
      std::string_view f = std::string_view(n).substr(dot + 1);
      T** slot = f == "attn_norm.weight"  ? &b.attn_norm
                 : f == "attn.wq"         ? &b.wq
                 : f == "attn.wk"         ? &b.wk
                 : f == "attn.wv"         ? &b.wv
                 : f == "attn.wo"         ? &b.wo
                 : f == "mlp_norm.weight" ? &b.mlp_norm
                 : f == "mlp.w1"          ? &b.w1
                 : f == "mlp.w3"          ? &b.w3
                 : f == "mlp.w2"          ? &b.w2
                                          : nullptr;
      MG_CHECK(slot, "unbound parameter ", n);
      *slot = p;
    }
  }
  return w;
}

template GptWeights<float> bind_weights<float>(const ModelConfig&, const std::vector<ParamSpec>&,
                                               float*);
template GptWeights<double> bind_weights<double>(const ModelConfig&, const std::vector<ParamSpec>&,
                                                 double*);

template <typename T>
void init_param(const ParamSpec& spec, T* out, Rng& rng) {
  const int64_t n = spec.numel();
  for (int64_t i = 0; i < n; ++i) {
    switch (spec.init) {
      case Init::normal:
        out[i] = T(spec.scale * rng.normal());
        break;
      case Init::uniform:
        out[i] = T(rng.uniform(-spec.scale, spec.scale));
        break;
      case Init::zero:
        out[i] = T(0);
        break;
      case Init::ones:
        out[i] = T(1);
        break;
    }
  }
}

template void init_param<float>(const ParamSpec&, float*, Rng&);
template void init_param<double>(const ParamSpec&, double*, Rng&);

}  // namespace muongpt
