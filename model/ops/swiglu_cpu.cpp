#include "model/ops/swiglu.h"

namespace muongpt {

template <typename T>
void swiglu_forward(T* act, T* gate, const T* h, const T* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    gate[i] = silu(h[i]);
    act[i] = gate[i] * u[i];
  }
}

template <typename T>
void swiglu_backward(T* dh, T* du, const T* dact, const T* h, const T* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T g = dact[i];  // read before dh[i] (which may be the same element) is written
    du[i] = swiglu_grad_u(g, h[i]);
    dh[i] = swiglu_grad_h(g, h[i], u[i]);
  }
}

#define MG_INSTANTIATE(T)                                               \
  template void swiglu_forward<T>(T*, T*, const T*, const T*, int64_t); \
  template void swiglu_backward<T>(T*, T*, const T*, const T*, const T*, int64_t);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
