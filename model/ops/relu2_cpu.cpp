#include "model/ops/relu2.h"

namespace muongpt {

template <typename T>
void relu2_forward(T* out, const T* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = relu2(h[i]);
}

template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dh[i] = dout[i] * relu2_grad(h[i]);
}

template void relu2_forward<float>(float*, const float*, int64_t);
template void relu2_forward<double>(double*, const double*, int64_t);
template void relu2_backward<float>(float*, const float*, const float*, int64_t);
template void relu2_backward<double>(double*, const double*, const double*, int64_t);

}  // namespace muongpt
