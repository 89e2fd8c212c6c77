#include "model/ops/cross_entropy.h"

namespace muongpt {

template <typename T>
T softcap_cross_entropy_forward(T* logits, T* lse, const int32_t* targets, int64_t N, int64_t V,
                                T cap) {
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    T* z = logits + n * V;
    T m = z[0] = softcap(z[0], cap);
    for (int64_t j = 1; j < V; ++j) {
      z[j] = softcap(z[j], cap);
      m = z[j] > m ? z[j] : m;
    }
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(double(z[j] - m));
    lse[n] = m + T(std::log(sum));
    total += double(lse[n]) - double(z[targets[n]]);
  }
  return T(total / double(N));
}

template <typename T>
void softcap_cross_entropy_backward(T* logits, const T* lse, const int32_t* targets, int64_t N,
                                    int64_t V, T cap, T dloss) {
  const T scale = dloss / T(N);
  for (int64_t n = 0; n < N; ++n) {
    T* z = logits + n * V;
    for (int64_t j = 0; j < V; ++j) {
      T p = std::exp(z[j] - lse[n]);
      T dz = scale * (p - (j == targets[n] ? T(1) : T(0)));
      z[j] = dz * softcap_grad(z[j], cap);
    }
  }
}

#define MG_INSTANTIATE(T)                                                                         \
  template T softcap_cross_entropy_forward<T>(T*, T*, const int32_t*, int64_t, int64_t, T);       \
  template void softcap_cross_entropy_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, \
                                                  T, T);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
