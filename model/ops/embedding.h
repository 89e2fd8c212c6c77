// Token embedding lookup.
//   forward:  out[n, :] = table[idx[n], :]            idx [N], table [Vp, d], out [N, d]
//   backward: dtable[idx[n], :] += dout[n, :]          in token order, so it is deterministic
// Token ids are validated by the caller (the model), not here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace muongpt {

template <typename T>
void embedding_forward(T* out, const T* table, const int32_t* idx, int64_t N, int64_t d);

template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t d);

// ---- CUDA (embedding.cu): T = float or __nv_bfloat16 storage, device pointers, asynchronous on
// `stream`. Ids must lie in [0, vocab_rows) (the model checks them on the host).

// out [N, d] (T) = table [vocab_rows, d] (T) gathered by idx [N]: a copy, bit for bit.
template <typename T>
void embedding_forward_cuda(T* out, const T* table, const int32_t* idx, int64_t N, int64_t d,
                            CudaStream stream);

// Bytes of device scratch embedding_backward_cuda needs for N tokens with ids below vocab_rows.
// Asks CUB for its sort's temporary storage, so it needs a CUDA device.
size_t embedding_backward_scratch_bytes(int64_t N, int64_t vocab_rows);

// dtable [vocab_rows, d] fp32 += dout [N, d] scattered by idx [N]. Deterministic, and bit for bit
// the CPU's sum: a stable radix sort (CUB) orders the positions by token id, keeping token order
// within an id; then for each id one thread per column adds its rows to dtable in that order, so
// every entry gets dtable + dout[n1] + dout[n2] + ... in increasing n, exactly like the CPU loop.
// No atomics (so no run-to-run variation); the cost is the longest run of one id (the most
// frequent token), which one thread per column walks sequentially.
template <typename T>
void embedding_backward_cuda(float* dtable, const T* dout, const int32_t* idx, int64_t N, int64_t d,
                             int64_t vocab_rows, void* scratch, size_t scratch_bytes,
                             CudaStream stream);

}  // namespace muongpt
