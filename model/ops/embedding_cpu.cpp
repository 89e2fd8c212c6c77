#include "model/ops/embedding.h"

namespace muongpt {

template <typename T>
void embedding_forward(T* out, const T* table, const int32_t* idx, int64_t N, int64_t d) {
  for (int64_t n = 0; n < N; ++n) {
    const T* row = table + static_cast<int64_t>(idx[n]) * d;
    for (int64_t j = 0; j < d; ++j) out[n * d + j] = row[j];
  }
}

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t d) {
  for (int64_t n = 0; n < N; ++n) {
    T* row = dtable + static_cast<int64_t>(idx[n]) * d;
    for (int64_t j = 0; j < d; ++j) row[j] += dout[n * d + j];
  }
}

template void embedding_forward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_forward<double>(double*, const double*, const int32_t*, int64_t, int64_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int64_t, int64_t);
template void embedding_backward<double>(double*, const double*, const int32_t*, int64_t, int64_t);

}  // namespace muongpt
