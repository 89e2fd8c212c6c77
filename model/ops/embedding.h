// Token embedding lookup.
//   forward:  out[n, :] = table[idx[n], :]            idx [N], table [Vp, d], out [N, d]
//   backward: dtable[idx[n], :] += dout[n, :]          in token order, so it is deterministic
// Token ids are validated by the caller (the model), not here.
#pragma once

#include <cstdint>

namespace muongpt {

template <typename T>
void embedding_forward(T* out, const T* table, const int32_t* idx, int64_t N, int64_t d);

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t d);

}  // namespace muongpt
