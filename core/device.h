// What GPUs this process can see. Safe to call in any build: without CUDA (or without a GPU)
// cuda_device_count() is 0 and never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// cudaStream_t without the CUDA headers, so host code can pass streams through.
struct CUstream_st;

namespace muongpt {

using CudaStream = CUstream_st*;

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  size_t total_bytes = 0;
  int sm_count = 0;
};

bool built_with_cuda();
int cuda_device_count();
DeviceInfo cuda_device_info(int index);
std::string describe_devices();  // one line per GPU, or why there is none

// The dense peak of a GPU, in TFLOP/s, from its name (cudaDeviceProp::name), for the MFU: bf16
// tensor-core matrix products, or strict float32 (no TF32: muongpt's fp32 mode). 0 for a GPU not
// in the table (core/peak_flops.cpp: the data-sheet figures it knows).
double gpu_peak_tflops(const std::string& name, bool bf16);

// Free memory of the current GPU in bytes (cudaMemGetInfo); 0 without one.
size_t cuda_free_memory();

// Makes GPU `index` current for this thread (a rank uses its local rank's GPU). Error naming the
// GPUs there are when the index is out of range.
void cuda_set_device(int index);

// Toolchain smoke test: y ← a·x + y computed by a CUDA kernel on device 0 (host arrays in/out).
void cuda_axpy(float a, const float* x, float* y, int64_t n);

}  // namespace muongpt
