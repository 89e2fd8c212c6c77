#include <cmath>

#include "core/error.h"
#include "model/ops/rope.h"

namespace muongpt {

template <typename T>
void rope_tables(T* cos, T* sin, int64_t seq, int64_t dh, double base) {
  MG_CHECK(dh % 4 == 0, "rope needs d_head divisible by 4, got ", dh);
  const int64_t half = dh / 2, quarter = dh / 4;
  for (int64_t t = 0; t < seq; ++t) {
    for (int64_t j = 0; j < half; ++j) {
      double freq = 0.0;
      if (j < quarter) {
        double frac = quarter > 1 ? double(j) / double(quarter - 1) : 0.0;  // linspace(0, 1)
        freq = std::pow(1.0 / base, frac);
      }
      cos[t * half + j] = T(std::cos(double(t) * freq));
      sin[t * half + j] = T(std::sin(double(t) * freq));
    }
  }
}

template <typename T>
static void rope_apply(T* x, const T* cos, const T* sin, int64_t B, int64_t T_, int64_t H,
                       int64_t dh, T sign) {
  const int64_t half = dh / 2;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T_; ++t)
      for (int64_t h = 0; h < H; ++h)
        rope_row(x + ((b * T_ + t) * H + h) * dh, cos + t * half, sin + t * half, half, sign);
}

template <typename T>
void rope_forward(T* x, const T* cos, const T* sin, int64_t B, int64_t T_, int64_t H, int64_t dh) {
  rope_apply(x, cos, sin, B, T_, H, dh, T(1));
}

template <typename T>
void rope_backward(T* dx, const T* cos, const T* sin, int64_t B, int64_t T_, int64_t H,
                   int64_t dh) {
  rope_apply(dx, cos, sin, B, T_, H, dh, T(-1));
}

#define MG_INSTANTIATE(T)                                                                    \
  template void rope_tables<T>(T*, T*, int64_t, int64_t, double);                            \
  template void rope_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t); \
  template void rope_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
