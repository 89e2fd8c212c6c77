// Linear layer without bias, weights [out, in] like torch.nn.Linear:
//   linear:      y = x · Wᵀ                        x [N, in], W [out, in], y [N, out]
//   linear_add:  y = residual + x · Wᵀ             residual [N, out]
//   backward:    dW += dyᵀ · x,   dx (+)= dy · W
// linear_add is how the model's skip connections are written (x = x + f(x)): the residual's
// gradient is dy itself, which the caller keeps.
#pragma once

#include <cstdint>

namespace muongpt {

template <typename T>
void linear(T* y, const T* x, const T* W, int64_t N, int64_t in, int64_t out);
// residual may equal y (in-place add).
template <typename T>
void linear_add(T* y, const T* residual, const T* x, const T* W, int64_t N, int64_t in,
                int64_t out);

// dx may be null (no input gradient wanted); it is overwritten unless accumulate_dx.
template <typename T>
void linear_backward(T* dx, T* dW, const T* dy, const T* x, const T* W, int64_t N, int64_t in,
                     int64_t out, bool accumulate_dx);

}  // namespace muongpt
