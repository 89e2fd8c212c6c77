#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu_math.h"
#include "core/parallel.h"
#include "model/ops/cross_entropy.h"

namespace muongpt {

namespace {

// One row of the forward: caps z[0..V) in place and returns its logsumexp. Float rows use the
// vectorizable exp/tanh of core/cpu_math.h (the row holds 50k logits: this is most of a CPU
// step's non-GEMM time); double rows (gradient checks) use the standard library.
template <typename T>
MG_CPU_CLONES T forward_row(T* z, int64_t V, T cap) {
  if constexpr (std::is_same_v<T, float>) {
    // Three passes, each written so it vectorizes: cap, max (16 independent lanes), Σ exp.
    constexpr int64_t kLanes = 16;
    if (cap > 0)
      for (int64_t j = 0; j < V; ++j) z[j] = cap * tanh_fast(z[j] / cap);
    float lane[kLanes];
    for (float& l : lane) l = -INFINITY;
    int64_t j = 0;
    for (; j + kLanes <= V; j += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) lane[k] = std::max(lane[k], z[j + k]);
    for (; j < V; ++j) lane[0] = std::max(lane[0], z[j]);
    float m = lane[0];
    for (float l : lane) m = std::max(m, l);
    for (float& l : lane) l = 0;
    for (j = 0; j + kLanes <= V; j += kLanes)
      for (int64_t k = 0; k < kLanes; ++k) lane[k] += exp_fast(z[j + k] - m);
    for (; j < V; ++j) lane[0] += exp_fast(z[j] - m);
    double sum = 0;
    for (float l : lane) sum += l;
    return m + float(std::log(sum));
  } else {
    T m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) {
      z[j] = softcap(z[j], cap);
      m = z[j] > m ? z[j] : m;
    }
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(z[j] - m);
    return m + T(std::log(sum));
  }
}

template <typename T>
MG_CPU_CLONES void backward_row(T* z, T lse, int32_t target, int64_t V, T cap, T scale) {
  const T z_target = z[target];
  for (int64_t j = 0; j < V; ++j) {
    T p;
    if constexpr (std::is_same_v<T, float>)
      p = exp_fast(z[j] - lse);
    else
      p = std::exp(z[j] - lse);
    z[j] = scale * p * softcap_grad(z[j], cap);
  }
  z[target] -= scale * softcap_grad(z_target, cap);  // the −onehot(target) term
}

}  // namespace

template <typename T>
T softcap_cross_entropy_forward(T* logits, T* lse, const int32_t* targets, int64_t N, int64_t V,
                                T cap) {
  parallel_for(N, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) lse[n] = forward_row(logits + n * V, V, cap);
  });
  double total = 0;  // summed in row order: the same on any thread count
  for (int64_t n = 0; n < N; ++n) total += double(lse[n]) - double(logits[n * V + targets[n]]);
  return T(total / double(N));
}

template <typename T>
void softcap_cross_entropy_backward(T* logits, const T* lse, const int32_t* targets, int64_t N,
                                    int64_t V, T cap, T dloss) {
  const T scale = dloss / T(N);
  parallel_for(N, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      backward_row(logits + n * V, lse[n], targets[n], V, cap, scale);
  });
}

#define MG_INSTANTIATE(T)                                                                         \
  template T softcap_cross_entropy_forward<T>(T*, T*, const int32_t*, int64_t, int64_t, T);       \
  template void softcap_cross_entropy_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, \
                                                  T, T);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
