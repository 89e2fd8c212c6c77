// A device-memory communicator made of a host-memory one: each collective copies its device
// buffers to host memory, runs the host communicator's collective there (MPI), and copies the
// result back ([device] comm = "mpi" for CUDA ranks; docs/distributed.md). It exists because NCCL
// refuses two ranks on one GPU, so the multi-process CUDA path could not otherwise run on a
// one-GPU machine, and for machines without NCCL. Slow: two copies and two waits per collective.
//
// The logic (core/comm_staged.cpp) knows nothing of CUDA: the copies, the stream waits and the
// host memory come from a StagingDevice, so the tests run it on the CPU with a stand-in device
// (tests/mpi/test_comm_mpi.cpp) and the CUDA one is a few lines (core/comm_staged_cuda.cpp).
//
// Ordering, as NcclComm's: with a stream (set_stream) a collective starts after the work already
// queued on that stream and its copies run on it; without one it first waits for the whole device.
// Either way the result is in the device buffers when the call returns.
//
// Memory: one host buffer (pinned, for CUDA), grown to the largest collective seen (its input
// and output side by side) and reused, so repeated sizes allocate nothing. For the CUDA optimizer
// that is (world + 1) × its rank block of fp32 values: about 4 · (1 + 1/world) bytes per parameter.
// Host values (sum, any, all_gather_strings, host_all_gather) go straight to the host
// communicator, without copies.
#pragma once

#include <cstddef>
#include <memory>

#include "core/comm.h"

namespace muongpt {

// What a staged communicator needs of the device. Streams are as in core/device.h (nullptr: the
// legacy default stream).
class StagingDevice {
 public:
  virtual ~StagingDevice() = default;
  // Host memory the copies can use (CUDA: page-locked, so they are DMA transfers).
  virtual void* allocate_host(size_t bytes) = 0;
  virtual void free_host(void* p) noexcept = 0;
  // Queued on `stream` after the work already there; done only once the stream is synchronised.
  virtual void copy_to_host(void* host, const void* device, size_t bytes, CudaStream stream) = 0;
  virtual void copy_to_device(void* device, const void* host, size_t bytes, CudaStream stream) = 0;
  // Blocks until everything queued on `stream` has run; nullptr: everything on the device.
  virtual void synchronize(CudaStream stream) = 0;
};

// The current CUDA device's copies (cudaMemcpyAsync), waits and pinned host memory. Error in a
// build without CUDA.
std::unique_ptr<StagingDevice> make_cuda_staging_device();

// `host` must move host memory (buffers() == Device::cpu). The result reports Device::cuda
// buffers and the backend "<host's>-staged" ("mpi-staged"); `host`'s watchdog bounds the waits for
// the other ranks. The first form owns `host`, the second borrows it (it must outlive the result).
std::unique_ptr<Comm> make_staged_comm(std::unique_ptr<Comm> host,
                                       std::unique_ptr<StagingDevice> device);
std::unique_ptr<Comm> make_staged_comm(Comm& host, std::unique_ptr<StagingDevice> device);

}  // namespace muongpt
