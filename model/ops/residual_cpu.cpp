#include "model/ops/residual.h"

namespace muongpt {

template <typename T>
void residual_add(T* x, const T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = residual_add_element(x[i], y[i]);
}

template void residual_add<float>(float*, const float*, int64_t);
template void residual_add<double>(double*, const double*, int64_t);

}  // namespace muongpt
