#include "model/ops/linear.h"

#include <algorithm>

#include "core/gemm.h"

namespace muongpt {

template <typename T>
void linear(T* y, const T* x, const T* W, int64_t N, int64_t in, int64_t out) {
  gemm(false, true, N, out, in, T(1), x, in, W, in, T(0), y, out);
}

template <typename T>
void linear_add(T* y, const T* residual, const T* x, const T* W, int64_t N, int64_t in,
                int64_t out) {
  if (residual != y) std::copy(residual, residual + N * out, y);
  gemm(false, true, N, out, in, T(1), x, in, W, in, T(1), y, out);
}

template <typename T>
void linear_backward(T* dx, T* dW, const T* dy, const T* x, const T* W, int64_t N, int64_t in,
                     int64_t out, bool accumulate_dx) {
  gemm(true, false, out, in, N, T(1), dy, out, x, in, T(1), dW, in);  // dW += dyᵀ x
  if (dx) gemm(false, false, N, in, out, T(1), dy, out, W, in, accumulate_dx ? T(1) : T(0), dx, in);
}

#define MG_INSTANTIATE(T)                                                                   \
  template void linear<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);               \
  template void linear_add<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t); \
  template void linear_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                   int64_t, bool);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
