// Launchers of the fused causal attention (model/ops/flash_attention.h); the kernels are in
// model/ops/flash_attention_kernels.cuh.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>

#include "core/cuda_check.h"
#include "core/error.h"
#include "model/ops/flash_attention.h"
#include "model/ops/flash_attention_kernels.cuh"

namespace muongpt {

namespace {

void check_args(const char* op, int64_t B, int64_t T_, int64_t H, int64_t dh,
                std::initializer_list<const void*> pointers) {
  if (B < 0 || T_ < 0 || H <= 0 || !flash_attention_supports(dh))
    fail(op, "bad shape B=", B, " T=", T_, " H=", H, " dh=", dh,
         " (the fused kernels take head dims 64 and 128)");
  if (T_ > 0x7fffffff / 2 || B * H > 65535) fail(op, "B·H = ", B * H, ", T = ", T_, ": too large");
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) fail(op, "a buffer is not 16-byte aligned");
}

// Launches `kernel` over (row blocks, B·H) with kSmem bytes of dynamic shared memory. The kernel's
// limit is raised above the default 48 KiB once per device it runs on, not at every launch.
template <auto kernel, size_t kSmem, typename... Args>
void launch(const char* name, int64_t T_, int64_t heads, CudaStream stream, Args... args) {
  static std::atomic<int> raised_on{-1};  // the device whose limit was raised (one per process)
  int device = 0;
  MG_CUDA(cudaGetDevice(&device));
  if (raised_on.load(std::memory_order_relaxed) != device) {
    MG_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem)));
    raised_on.store(device, std::memory_order_relaxed);
  }
  kernel<<<dim3(unsigned(row_blocks(T_)), unsigned(heads)), kThreads, kSmem, stream>>>(args...);
  MG_CUDA_LAUNCH(name);
}

template <int D>
void forward(bf16* y, float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t B,
             int64_t T_, int64_t H, float scale, CudaStream stream) {
  launch<flash_forward_kernel<D>, kForwardSmem<D>>("flash_forward_kernel", T_, B * H, stream, y,
                                                   lse, q, k, v, int(T_), int(H), scale * kLog2e);
}

template <int D>
void backward(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dy, const bf16* y,
              const float* lse, const bf16* q, const bf16* k, const bf16* v, int64_t B, int64_t T_,
              int64_t H, float scale, CudaStream stream) {
  const int64_t rows = B * T_ * H;
  flash_delta_kernel<<<unsigned((rows + kDeltaWarps - 1) / kDeltaWarps), kDeltaWarps * kWarp, 0,
                       stream>>>(delta, dy, y, rows, int(T_), int(H), D);
  MG_CUDA_LAUNCH("flash_delta_kernel");
  launch<flash_dkdv_kernel<D, kDkdvQueryTile<D>>, kDkdvSmem<D>>(
      "flash_dkdv_kernel", T_, B * H, stream, dk, dv, dy, lse, delta, q, k, v, int(T_), int(H),
      scale, scale * kLog2e);
  launch<flash_dq_kernel<D>, kDqSmem<D>>("flash_dq_kernel", T_, B * H, stream, dq, dy, lse, delta,
                                         q, k, v, int(T_), int(H), scale, scale * kLog2e);
}

}  // namespace

bool flash_attention_supports(int64_t dh) {
  return dh == 64 || dh == 128;
}

void flash_attention_forward_cuda(bf16* y, float* lse, const bf16* q, const bf16* k, const bf16* v,
                                  int64_t B, int64_t T_, int64_t H, int64_t dh, float scale,
                                  CudaStream stream) {
  check_args("flash_attention_forward_cuda", B, T_, H, dh, {y, lse, q, k, v});
  if (B == 0 || T_ == 0) return;
  if (dh == 64)
    forward<64>(y, lse, q, k, v, B, T_, H, scale, stream);
  else
    forward<128>(y, lse, q, k, v, B, T_, H, scale, stream);
}

void flash_attention_backward_cuda(bf16* dq, bf16* dk, bf16* dv, float* delta, const bf16* dy,
                                   const bf16* y, const float* lse, const bf16* q, const bf16* k,
                                   const bf16* v, int64_t B, int64_t T_, int64_t H, int64_t dh,
                                   float scale, CudaStream stream) {
  check_args("flash_attention_backward_cuda", B, T_, H, dh,
             {dq, dk, dv, delta, dy, y, lse, q, k, v});
  if (B == 0 || T_ == 0) return;
  if (dh == 64)
    backward<64>(dq, dk, dv, delta, dy, y, lse, q, k, v, B, T_, H, scale, stream);
  else
    backward<128>(dq, dk, dv, delta, dy, y, lse, q, k, v, B, T_, H, scale, stream);
}

}  // namespace muongpt
