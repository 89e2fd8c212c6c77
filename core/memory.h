// How much memory a process may still take, so that a model too large for the machine is refused
// with one line before anything is allocated, instead of being killed by the kernel (or failing
// deep inside a CUDA allocation).
#pragma once

#include <cstddef>
#include <string>

#include "core/tensor.h"

namespace muongpt {

// Bytes still available on `device`: for the host, /proc/meminfo's MemAvailable, or the cgroup's
// memory.max less its memory.current when that is lower; for the GPU, the current device's free
// memory (cudaMemGetInfo). $MUONGPT_MEMORY_LIMIT (bytes, or with a K/M/G suffix) caps both, for
// tests and for sharing a machine.
size_t available_memory(Device device);

// Error(where, "<what> needs X GiB on <device>, Y GiB available") when bytes exceed it.
void check_memory_fits(Device device, size_t bytes, const std::string& where,
                       const std::string& what);

std::string format_gib(size_t bytes);  // "12.3 GiB", or "512.0 MiB" below a GiB

}  // namespace muongpt
