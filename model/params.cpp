#include "model/params.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace muongpt {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
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
  const int64_t d = c.d_model, f = c.d_mlp(), vp = c.vocab_padded();
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
