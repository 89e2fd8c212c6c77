// Helpers for the GPU tests: skip without a device, and device arrays that upload from and
// download to std::vector. Every GPU test is labelled `gpu` and starts with MG_REQUIRE_GPU().
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/device.h"

#ifdef MUONGPT_HAVE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

#define MG_REQUIRE_GPU() \
  if (::muongpt::cuda_device_count() == 0) GTEST_SKIP() << ::muongpt::describe_devices()

#ifdef MUONGPT_HAVE_CUDA
namespace muongpt::testing {

// A device buffer of n elements of T (trivially copyable), freed on destruction.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t n) : n_(n) {
    MG_CUDA(cudaMalloc(&p_, sizeof(T) * size_t(n > 0 ? n : 1)));
    MG_CUDA(cudaMemset(p_, 0, sizeof(T) * size_t(n > 0 ? n : 1)));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(int64_t(host.size())) {
    upload(host);
  }
  ~DeviceArray() { cudaFree(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return p_; }
  int64_t size() const { return n_; }
  // Waits for the copy to land: from pageable memory cudaMemcpy may return before it has, and
  // a kernel on a non-blocking stream is not ordered after it.
  void upload(const std::vector<T>& host) {
    MG_CUDA(cudaMemcpy(p_, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice));
    MG_CUDA(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> host(static_cast<size_t>(n_));
    MG_CUDA(cudaDeviceSynchronize());
    MG_CUDA(cudaMemcpy(host.data(), p_, sizeof(T) * host.size(), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* p_ = nullptr;
  int64_t n_;
};

// The copy of a testing::ThreadComm over device buffers (thread_comm.h): waits for the device,
// so that a collective sees every rank's finished work, then copies, and waits for the copy to
// land before the rank's next kernel (on its own non-blocking stream) can read it.
inline void device_staging_copy(void* dst, const void* src, size_t bytes) {
  MG_CUDA(cudaDeviceSynchronize());
  MG_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
  MG_CUDA(cudaDeviceSynchronize());
}

}  // namespace muongpt::testing
#endif
