// Ranks and the communicator (DESIGN.md section 7; docs/distributed.md for launching).
//
// One process per device. discover_ranks() finds this process's place from flags, else torchrun
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR), else OpenMPI
// (OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE), else Slurm (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID, SLURM_NTASKS_PER_NODE), else it is the only rank.
//
// A Comm runs collectives over the ranks: sums, reduce-scatter, all-gather, broadcast, barrier.
// The MPI implementation moves host memory (CPU runs), the NCCL one device memory (CUDA runs);
// a world of one needs neither. core/comm_staged.h makes a device-memory communicator of a
// host-memory one by copying through host memory ([device] comm = "mpi" for CUDA ranks, which lets
// several share one GPU). Every collective is watched: one that waits longer than the
// timeout for the other ranks (a rank died, hangs or was stopped) prints one error line naming
// the collective and ends the process with exit code 3, so the launcher takes the job down.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace muongpt {

struct RankInfo {
  int rank = 0, world = 1;
  int local_rank = 0, local_world = 1;  // among the ranks on this host
  std::string host;                     // this machine's hostname
  std::string source = "single";        // flags | torchrun | openmpi | slurm | single
  std::string master_addr;              // torchrun's MASTER_ADDR ("" when not set)

  std::string describe() const;  // "rank 1/4 (local 1/2) on host node7, from OpenMPI"
};

// Explicit values from the command line; −1 = not given.
struct RankFlags {
  int rank = -1, world = -1, local_rank = -1;
};

// `env` looks up an environment variable (null when unset); tests pass a fake one. Errors (a
// rank outside [0, world), a non-numeric variable, flags given only in part) name the source.
RankInfo discover_ranks(const RankFlags& flags,
                        const std::function<const char*(const char*)>& env = nullptr);

// True when this process was started by mpirun/mpiexec (OpenMPI) or by srun with MPI support:
// then MPI is the way to exchange anything between ranks.
bool launched_by_mpi(const std::function<const char*(const char*)>& env = nullptr);

class Comm {
 public:
  virtual ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }
  virtual std::string_view backend() const = 0;  // "single", "mpi", "nccl", "mpi-staged"
  // Whether buffers are device memory (NCCL) or host memory.
  virtual Device buffers() const = 0;

  // In place: buf[0..n) ← Σ over ranks.
  void all_reduce_sum(void* buf, int64_t n, DType type);
  // send [world · count] → recv [count]: rank r receives the sum over ranks of block r.
  void reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type);
  // send [count] → recv [world · count]: block r of recv is rank r's send.
  void all_gather(const void* send, void* recv, int64_t count, DType type);
  void broadcast(void* buf, int64_t n, DType type, int root);
  void barrier();

  // Conveniences on host values, whatever buffers() is.
  void host_sum(double* values, int64_t n);  // in place, over ranks
  double sum(double value);
  bool any(bool value);  // true when any rank says true
  std::vector<std::string> all_gather_strings(const std::string& mine);
  // send [bytes] of host memory → recv [world · bytes]: block r is rank r's send (moved in
  // pieces, so any size works with every backend).
  void host_all_gather(const void* send, void* recv, int64_t bytes);

  // Wall time this process has spent inside collectives (waiting for the other ranks included).
  // For a device-memory communicator with a stream that is only the time to queue them.
  double collective_seconds() const { return double(collective_ns_) * 1e-9; }

  // Device-memory communicators run their collectives on this stream (ordered after the work
  // already queued on it); without one they synchronise the device first. Host ones ignore it.
  virtual void set_stream(CudaStream) {}

 protected:
  Comm(int rank, int world, double timeout_s);
  // Starts the watchdog thread (multi-rank implementations call it once they are connected).
  void start_watchdog();
  // Called from the watchdog thread just before the process exits (NCCL aborts its
  // communicator here). Must be safe to call while another thread is inside a collective.
  virtual void abort_from_watchdog() {}

  virtual void do_all_reduce_sum(void* buf, int64_t n, DType type) = 0;
  virtual void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) = 0;
  virtual void do_all_gather(const void* send, void* recv, int64_t count, DType type) = 0;
  virtual void do_broadcast(void* buf, int64_t n, DType type, int root) = 0;
  virtual void do_barrier() = 0;
  // The conveniences' collectives on host memory; device-memory communicators stage them.
  virtual void do_host_all_reduce_f64(double* v, int64_t n) { do_all_reduce_sum(v, n, DType::f64); }
  virtual void do_host_all_gather_bytes(const void* send, void* recv, int64_t bytes) {
    do_all_gather(send, recv, bytes, DType::u8);
  }

 private:
  class Watch;  // RAII: marks a collective as in flight
  void watchdog_loop();

  int rank_, world_;
  double timeout_s_;
  std::atomic<int64_t> busy_since_ns_{0};  // steady-clock time the current collective began
  std::atomic<const char*> busy_op_{nullptr};
  int64_t collective_ns_ = 0;  // summed by Watch
  std::atomic<bool> stop_{false};
  std::thread watchdog_;
};

// A world of one: every collective is the identity (sums of one value, gather of one block).
std::unique_ptr<Comm> make_single_comm();

// MPI_COMM_WORLD (initialising MPI on first use, finalising it when the Comm is destroyed
// normally); its rank and size must agree with `info`. Error in a build without MPI.
std::unique_ptr<Comm> make_mpi_comm(const RankInfo& info, double timeout_s);
bool built_with_mpi();

// NCCL over device memory on the current CUDA device (docs/distributed.md: how the unique id
// travels). Init is non-blocking and gives up after timeout_s. Error in a build without NCCL.
std::unique_ptr<Comm> make_nccl_comm(const RankInfo& info, double timeout_s);
bool built_with_nccl();

// After an error on one rank of a multi-rank job: takes the whole job down (MPI_Abort when MPI is
// running) so no rank waits forever for this one. Returns when there is nothing to abort.
void abort_job(int code);

}  // namespace muongpt
