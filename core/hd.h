// MG_HD marks the per-element and per-row math that the CPU loops and the CUDA kernels share.
#pragma once

#ifdef __CUDACC__
#define MG_HD __host__ __device__ __forceinline__
#else
#define MG_HD inline
#endif
