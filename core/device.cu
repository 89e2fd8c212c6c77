#include <cuda_runtime.h>

#include <sstream>
#include <string>

#include "core/arena.h"
#include "core/cuda_check.h"
#include "core/device.h"

namespace muongpt {

bool built_with_cuda() {
  return true;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

DeviceInfo cuda_device_info(int index) {
  cudaDeviceProp prop{};
  MG_CUDA(cudaGetDeviceProperties(&prop, index));
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.total_bytes = prop.totalGlobalMem;
  info.sm_count = prop.multiProcessorCount;
  return info;
}

std::string describe_devices() {
  int n = cuda_device_count();
  if (n == 0) return "no CUDA device visible (driver missing or no GPU)";
  std::ostringstream os;
  for (int i = 0; i < n; ++i) {
    DeviceInfo d = cuda_device_info(i);
    os << (i ? "\n" : "") << "cuda:" << i << " " << d.name << " sm_" << d.cc_major << d.cc_minor
       << " " << d.sm_count << " SMs " << d.total_bytes / (1024 * 1024) << " MiB";
  }
  return os.str();
}

void cuda_set_device(int index) {
  const int n = cuda_device_count();
  if (index < 0 || index >= n)
    fail("cuda", "GPU ", index, " asked for, but ", n == 0 ? "none is" : std::to_string(n) + " are",
         " visible (", describe_devices(), ")");
  MG_CUDA(cudaSetDevice(index));
}

size_t cuda_free_memory() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return free_b;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("cuda", "cannot allocate ", bytes / (1024.0 * 1024.0), " MiB of device memory (",
         free_b / (1024.0 * 1024.0), " MiB free of ", total_b / (1024.0 * 1024.0),
         " MiB): ", cudaGetErrorString(err));
  }
  return p;
}

void device_free(void* p) {
  if (p) cudaFree(p);
}

void device_memset_zero(void* p, size_t bytes) {
  MG_CUDA(cudaMemset(p, 0, bytes));
}

namespace {
__global__ void axpy_kernel(float a, const float* x, float* y, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
}  // namespace

void cuda_axpy(float a, const float* x, float* y, int64_t n) {
  if (cuda_device_count() == 0) fail("cuda", "no CUDA device visible");
  float *dx = nullptr, *dy = nullptr;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  MG_CUDA(cudaMalloc(&dx, bytes));
  MG_CUDA(cudaMalloc(&dy, bytes));
  MG_CUDA(cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice));
  MG_CUDA(cudaMemcpy(dy, y, bytes, cudaMemcpyHostToDevice));
  int threads = 256;
  auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  if (n > 0) axpy_kernel<<<blocks, threads>>>(a, dx, dy, n);
  MG_CUDA(cudaGetLastError());
  MG_CUDA(cudaMemcpy(y, dy, bytes, cudaMemcpyDeviceToHost));
  MG_CUDA(cudaFree(dx));
  MG_CUDA(cudaFree(dy));
}

}  // namespace muongpt
