// Telemetry's linear algebra on the GPU (train/spectra.h): Grams by cuBLASLt GEMM (float32
// accumulation, bf16 or float32 activations) summed in float64 on the device, eigenvalues by
// cuSOLVER in float64 (cusolverDnXsyevBatched over same-size Grams, or one cusolverDnXsyevd per
// Gram with MUONGPT_TELEMETRY_EIG=loop), squared norms by deterministic float64 reductions. Only
// eigenvalues and norms come back to the host. docs/telemetry.md, "On the GPU".
#pragma once

#include <memory>
#include <vector>

#include <cstdint>
#include <utility>

#include "core/device.h"
#include "train/spectra.h"

namespace muongpt {

// Everything is allocated here, once: the Gram accumulators (float64, Σ width² · 8 bytes), the
// batch buffers sized for `matrices` (the [rows, cols] of every 2-D parameter: gradients and
// updates) and the cuSOLVER workspaces. Work is queued on `stream` (the model's).
std::unique_ptr<Spectra> make_cuda_spectra(const std::vector<int64_t>& gram_widths,
                                           const std::vector<std::pair<int64_t, int64_t>>& matrices,
                                           CudaStream stream);

}  // namespace muongpt
