#include "model/ops/rmsnorm.h"

namespace muongpt {

template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* g, int64_t rows, int64_t n, T eps) {
  for (int64_t i = 0; i < rows; ++i) rstd[i] = rmsnorm_row_forward(y + i * n, x + i * n, g, n, eps);
}

template <typename T>
void rmsnorm_backward(T* dx, T* dg, const T* dy, const T* x, const T* g, const T* rstd,
                      int64_t rows, int64_t n, bool accumulate) {
  for (int64_t i = 0; i < rows; ++i)
    rmsnorm_row_backward(dx + i * n, dg, dy + i * n, x + i * n, g, rstd[i], n, accumulate);
}

#define MG_INSTANTIATE(T)                                                                    \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, T);         \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t, \
                                    int64_t, bool);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
