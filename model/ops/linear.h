// Linear layer without bias, weights [out, in] like torch.nn.Linear, with an optional residual:
//   forward:  y = residual + x · Wᵀ                x [N, in], W [out, in], y and residual [N, out]
//   backward: dW += dyᵀ · x,   dx (+)= dy · W
// The residual is how the model's skip connections are written (x = x + f(x)): its gradient is
// dy itself, which the caller keeps.
#pragma once

#include <cstdint>

namespace muongpt {

// residual may be null (plain y = x·Wᵀ) or equal to y (in-place add).
template <typename T>
void linear_forward(T* y, const T* x, const T* W, const T* residual, int64_t N, int64_t in,
                    int64_t out);

// dx may be null (no input gradient wanted); it is overwritten unless accumulate_dx.
template <typename T>
void linear_backward(T* dx, T* dW, const T* dy, const T* x, const T* W, int64_t N, int64_t in,
                     int64_t out, bool accumulate_dx);

}  // namespace muongpt
