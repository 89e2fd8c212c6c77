// Float math for the CPU hot loops (the softmax over a 50k vocabulary, the logit soft-cap):
// branch-free, so loops over a row vectorize, and built for AVX-512, AVX2 and baseline x86-64
// with runtime dispatch (MG_CPU_CLONES). Results are identical on every dispatch path: no FMA
// contraction (we compile as ISO C++, so -ffp-contract=off) and no reassociation.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__) && \
    !defined(__SANITIZE_ADDRESS__)
#define MG_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MG_CPU_CLONES
#endif

namespace muongpt {

// e^x for float: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-7 Taylor
// polynomial (relative error ~1e-7, about one ulp). Inputs are clamped to [−87, 88], so the
// result is never 0, a denormal or inf (e^−87 ≈ 1.6e-38 stands in for anything smaller: harmless
// in the softmax sums it feeds).
inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  constexpr float kRound = 12582912.0f;  // 1.5·2^23: adding and subtracting it rounds to integer
  const float n = (x * 1.44269504f + kRound) - kRound;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// tanh(x) = sign(x)·(1 − 2 / (e^{2|x|} + 1)): absolute error below 1e-7 (relative error grows
// for |x| < 1e-3, where tanh(x) ≈ x is below that absolute error anyway).
inline float tanh_fast(float x) {
  const float a = std::min(std::abs(x), 20.0f);
  const float t = 1.0f - 2.0f / (exp_fast(2.0f * a) + 1.0f);
  return x < 0 ? -t : t;
}

// Σ_j (a_j − b_j)² over n floats (b null: Σ a_j²) in float64, in eight interleaved partial sums
// combined in a fixed order: the result depends on the data alone, and the adds do not form one
// chain of dependent float64 adds (three to four times slower). For norms: the telemetry's and
// the CPU optimizer's gradient norm.
template <bool kDifference>
double sum_squares_f64_lanes(const float* a, const float* b, int64_t n) {
  double acc[8] = {};
  auto term = [&](int64_t j) {
    const double d = kDifference ? double(a[j]) - double(b[j]) : double(a[j]);
    return d * d;
  };
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) acc[l] += term(j + l);
  for (int l = 0; j < n; ++j, ++l) acc[l] += term(j);
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}
inline double sum_squares_f64(const float* a, const float* b, int64_t n) {
  return b ? sum_squares_f64_lanes<true>(a, b, n) : sum_squares_f64_lanes<false>(a, nullptr, n);
}

}  // namespace muongpt
