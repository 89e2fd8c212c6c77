// The CUDA optimizer behind Optimizer::create() when the parameters live on the GPU (internal:
// callers use optim/optimizer.h; tests and the trainer may pass options through
// make_cuda_optimizer directly). Declarations only, so any build can include this header; the
// implementation exists in CUDA builds (optim/optimizer_cuda.cpp, optim/optimizer_cuda.cu,
// optim/dualizer_cuda.cu). docs/optim.md, "On the GPU", describes the numerics.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "core/device.h"
#include "optim/dualizer_cuda.h"
#include "optim/optimizer.h"

namespace muongpt {

struct CudaOptimizerOptions {
  // Newton–Schulz storage. Unset: bf16 when any slot has a bf16 working copy (bf16 training),
  // fp32 otherwise (the fp32 debugging mode, where the model reads the fp32 masters).
  std::optional<NsPrecision> ns_precision;
  // Every kernel, copy and library call runs on this stream (nullptr: the legacy default stream).
  // step() is asynchronous on it, except as documented there.
  CudaStream stream = nullptr;
};

// The precision an unset ns_precision resolves to for these slots.
NsPrecision default_ns_precision(const std::vector<ParamSlot>& slots);

// routes and slots already agree (create() checks it); every slot's value, grad and working_bf16
// are device pointers. Allocates every buffer (state, Muon scratch, dualizer workspace) in one
// device allocation and runs each dualizer once on zeros, so that the GEMM plans and library
// workspaces exist before the first step. With a communicator of several ranks (device memory:
// NCCL) the work is sharded as on the CPU (optim/shard_plan.h), and the communicator's
// collectives are set to run on options.stream.
std::unique_ptr<Optimizer> make_cuda_optimizer(const std::vector<Route>& routes,
                                               const std::vector<ParamSlot>& slots,
                                               const OptimConfig& cfg, Comm* comm,
                                               const CudaOptimizerOptions& options = {});

}  // namespace muongpt
