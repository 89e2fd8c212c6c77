// The CUDA side of the staged communicator (core/comm_staged.h): runtime API calls only, so this
// is a .cpp compiled in every build (without CUDA it only explains why not).
#include <memory>

#include "core/comm_staged.h"
#include "core/error.h"

#ifdef MUONGPT_HAVE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#endif

namespace muongpt {

#ifdef MUONGPT_HAVE_CUDA

namespace {

class CudaStagingDevice final : public StagingDevice {
 public:
  // Page-locked: the copies are asynchronous DMA transfers at full bus speed, and a pageable
  // copy's hidden bounce buffer (one more copy) is avoided.
  void* allocate_host(size_t bytes) override {
    void* p = nullptr;
    MG_CUDA(cudaMallocHost(&p, bytes));
    return p;
  }
  void free_host(void* p) noexcept override { cudaFreeHost(p); }
  // cudaMemcpyDefault: the pointers say which way (unified addressing), so a host buffer given
  // as a "device" one still works.
  void copy_to_host(void* host, const void* device, size_t bytes, CudaStream stream) override {
    MG_CUDA(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDefault, as_cuda(stream)));
  }
  void copy_to_device(void* device, const void* host, size_t bytes, CudaStream stream) override {
    MG_CUDA(cudaMemcpyAsync(device, host, bytes, cudaMemcpyDefault, as_cuda(stream)));
  }
  void synchronize(CudaStream stream) override {
    if (stream)
      MG_CUDA(cudaStreamSynchronize(as_cuda(stream)));
    else
      MG_CUDA(cudaDeviceSynchronize());
  }
};

}  // namespace

std::unique_ptr<StagingDevice> make_cuda_staging_device() {
  return std::make_unique<CudaStagingDevice>();
}

#else

std::unique_ptr<StagingDevice> make_cuda_staging_device() {
  fail("cuda", "this muongpt was built without CUDA: there is no device memory to stage");
}

#endif

}  // namespace muongpt
