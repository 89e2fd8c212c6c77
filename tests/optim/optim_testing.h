// Helpers for the optimizer tests: random matrices with a chosen spectrum, Frobenius inner
// products and Schatten norms in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/gemm.h"
#include "core/rng.h"
#include "core/toml_reader.h"
#include "optim/config.h"
#include "optim/dualizer.h"
#include "optim/optimizer.h"

namespace muongpt::testing {

inline std::vector<float> gaussian(int64_t m, int64_t n, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  std::vector<float> x(size_t(m * n));
  for (float& v : x) v = float(scale * rng.normal());
  return x;
}

// An [m, m] orthogonal matrix (Q of a Gram–Schmidt on a Gaussian), in double.
inline std::vector<double> random_orthogonal(int64_t m, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> q(size_t(m * m));
  for (double& v : q) v = rng.normal();
  for (int64_t j = 0; j < m; ++j) {  // columns
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t k = 0; k < j; ++k) {
        double d = 0;
        for (int64_t i = 0; i < m; ++i) d += q[size_t(i * m + k)] * q[size_t(i * m + j)];
        for (int64_t i = 0; i < m; ++i) q[size_t(i * m + j)] -= d * q[size_t(i * m + k)];
      }
    double nrm = 0;
    for (int64_t i = 0; i < m; ++i) nrm += q[size_t(i * m + j)] * q[size_t(i * m + j)];
    nrm = std::sqrt(nrm);
    for (int64_t i = 0; i < m; ++i) q[size_t(i * m + j)] /= nrm;
  }
  return q;
}

// X = U diag(s) Vᵀ [m, n] with random orthogonal U, V and the given singular values.
inline std::vector<float> with_spectrum(int64_t m, int64_t n, const std::vector<double>& s,
                                        uint64_t seed) {
  const auto U = random_orthogonal(m, seed), V = random_orthogonal(n, seed + 1);
  std::vector<float> x(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double v = 0;
      for (size_t k = 0; k < s.size(); ++k) v += U[i * m + k] * s[k] * V[j * n + k];
      x[size_t(i * n + j)] = float(v);
    }
  return x;
}

inline double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// ‖σ‖_p for p ∈ [1, ∞].
inline double schatten_norm(const std::vector<double>& sigma, double p) {
  if (std::isinf(p)) return *std::max_element(sigma.begin(), sigma.end());
  const double top = *std::max_element(sigma.begin(), sigma.end());
  double s = 0;
  for (double x : sigma) s += std::pow(x / top, p);
  return top * std::pow(s, 1.0 / p);
}

inline double stable_rank(const std::vector<double>& sigma) {
  double f = 0;
  for (double x : sigma) f += x * x;
  return f / (sigma[0] * sigma[0]);
}

inline DualizerSpec spec(const std::string& name) {
  return parse_dualizer(name, DualizerSpec{}, "test", "dualizer");
}

inline std::vector<float> dualized(const std::string& name, const std::vector<float>& x, int64_t m,
                                   int64_t n) {
  std::vector<float> out(x.size());
  dualize(spec(name), x.data(), out.data(), m, n);
  return out;
}

inline OptimConfig optim_from_text(const std::string& text) {
  return optim_config_from_toml(parse_toml_string(text, "test.toml"), "test.toml");
}

// Parameters of the given shapes with N(0, 0.1²) values (from `seed`) and zero gradients, as
// optimizer slots: the optimizer tests' stand-in for a model.
struct ToyParams {
  std::vector<ParamSpec> specs;
  std::vector<std::vector<float>> values, grads;
  ToyParams(std::vector<ParamSpec> specs_in, uint64_t seed) : specs(std::move(specs_in)) {
    Rng rng(seed);
    for (const auto& s : specs) {
      values.emplace_back(size_t(s.numel()));
      grads.emplace_back(size_t(s.numel()));
      for (float& v : values.back()) v = float(0.1 * rng.normal());
    }
  }
  std::vector<ParamSlot> slots() {
    std::vector<ParamSlot> out;
    for (size_t i = 0; i < specs.size(); ++i)
      out.push_back({specs[i].name, specs[i].shape, values[i].data(), grads[i].data()});
    return out;
  }
};

}  // namespace muongpt::testing
