#include "model/ops/attention.h"

#include "core/gemm.h"

namespace muongpt {

// Per (batch, head): the head's rows are strided views with row stride d = H·dh, so every
// product below is one GEMM without any transposition copy.
template <typename T>
void attention_forward(T* y, T* probs, const T* q, const T* k, const T* v, int64_t B, int64_t T_,
                       int64_t H, int64_t dh, T scale) {
  const int64_t d = H * dh;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t off = b * T_ * d + h * dh;
      T* p = probs + (b * H + h) * T_ * T_;
      gemm(false, true, T_, T_, dh, scale, q + off, d, k + off, d, T(0), p, T_);  // s = q kᵀ
      for (int64_t t = 0; t < T_; ++t) {
        softmax_row(p + t * T_, t + 1);
        for (int64_t u = t + 1; u < T_; ++u) p[t * T_ + u] = 0;  // causal
      }
      gemm(false, false, T_, dh, T_, T(1), p, T_, v + off, d, T(0), y + off, d);  // y = p v
    }
  }
}

template <typename T>
void attention_backward(T* dq, T* dk, T* dv, T* scratch, const T* dy, const T* probs, const T* q,
                        const T* k, const T* v, int64_t B, int64_t T_, int64_t H, int64_t dh,
                        T scale) {
  const int64_t d = H * dh;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t off = b * T_ * d + h * dh;
      const T* p = probs + (b * H + h) * T_ * T_;
      T* ds = scratch;
      gemm(false, true, T_, T_, dh, T(1), dy + off, d, v + off, d, T(0), ds, T_);  // dp = dy vᵀ
      gemm(true, false, T_, dh, T_, T(1), p, T_, dy + off, d, T(0), dv + off, d);  // dv = pᵀ dy
      for (int64_t t = 0; t < T_; ++t) {
        softmax_row_backward(ds + t * T_, p + t * T_, t + 1);
        for (int64_t u = t + 1; u < T_; ++u) ds[t * T_ + u] = 0;
      }
      gemm(false, false, T_, dh, T_, scale, ds, T_, k + off, d, T(0), dq + off, d);  // dq
      gemm(true, false, T_, dh, T_, scale, ds, T_, q + off, d, T(0), dk + off, d);   // dk
    }
  }
}

#define MG_INSTANTIATE(T)                                                                     \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                     int64_t, int64_t, T);                                    \
  template void attention_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                      const T*, int64_t, int64_t, int64_t, int64_t, T);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
