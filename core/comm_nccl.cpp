// The NCCL communicator (device memory; CUDA runs). Host code only: NCCL's API and the CUDA
// runtime's, so this is a .cpp compiled in every build (without NCCL it only explains why not).
//
// The unique id travels by MPI when mpirun/srun started the job (and MPI is built in), else by
// the TCP rendezvous at MASTER_ADDR:$MUONGPT_RENDEZVOUS_PORT (default 29511, never torchrun's
// MASTER_PORT), else through the file $MUONGPT_RENDEZVOUS_FILE. The communicator is created
// non-blocking: init and every collective are polled, so the watchdog (Comm) can abort it when a
// peer is gone, and NCCL's asynchronous errors become an Error naming the collective.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <thread>

#include "core/comm.h"
#include "core/error.h"
#include "core/rendezvous.h"

#ifdef MUONGPT_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/cuda_check.h"
#endif

namespace muongpt {

#ifdef MUONGPT_HAVE_NCCL

namespace {

constexpr int kDefaultRendezvousPort = 29511;

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f64:
      return ncclFloat64;
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i64:
      return ncclInt64;
    case DType::i32:
      return ncclInt32;
    case DType::u8:
      return ncclUint8;
    case DType::u16:
      break;
  }
  fail("nccl", "no NCCL type for ", dtype_name(t), " buffers");
}

// The id from rank 0 to every rank, by whichever channel this launch offers.
ncclUniqueId share_unique_id(const RankInfo& info, double timeout_s,
                             std::unique_ptr<Comm>* mpi_out) {
  ncclUniqueId id{};
  if (info.rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
    fail("nccl", "ncclGetUniqueId failed (is a network interface up?)");
  std::string blob(reinterpret_cast<const char*>(&id), sizeof id);
  if (info.world == 1) {
    // nothing to share
  } else if (launched_by_mpi() && built_with_mpi()) {
    *mpi_out = make_mpi_comm(info, timeout_s);
    (*mpi_out)->broadcast(blob.data(), int64_t(blob.size()), DType::u8, 0);
  } else if (!info.master_addr.empty()) {
    int port = kDefaultRendezvousPort;
    if (const char* p = std::getenv("MUONGPT_RENDEZVOUS_PORT")) port = std::atoi(p);
    blob = rendezvous_tcp(info.rank, info.world, info.master_addr, port, info.rank == 0 ? blob : "",
                          timeout_s);
  } else if (const char* path = std::getenv("MUONGPT_RENDEZVOUS_FILE")) {
    blob = rendezvous_file(info.rank, info.world, path, info.rank == 0 ? blob : "", timeout_s);
  } else {
    fail(info.source, "rank ", info.rank, " of ", info.world,
         ": no way to share the NCCL id: launch with mpirun/srun, or torchrun (MASTER_ADDR), or "
         "set MUONGPT_RENDEZVOUS_FILE to a path every rank sees");
  }
  if (blob.size() != sizeof id) fail("nccl", "the shared NCCL id has ", blob.size(), " bytes");
  std::memcpy(&id, blob.data(), sizeof id);
  return id;
}

class NcclComm final : public Comm {
 public:
  NcclComm(const RankInfo& info, double timeout_s) : Comm(info.rank, info.world, timeout_s) {
    MG_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MG_CUDA(cudaMalloc(&scratch_, kScratchBytes));
    const ncclUniqueId id = share_unique_id(info, timeout_s, &mpi_);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    check(ncclCommInitRankConfig(&comm_, info.world, id, info.rank, &config),
          "ncclCommInitRankConfig");
    wait_ready("ncclCommInitRankConfig", timeout_s);
    start_watchdog();
  }
  ~NcclComm() override {
    if (comm_) {
      if (std::uncaught_exceptions() == 0 && ncclCommFinalize(comm_) == ncclSuccess)
        wait_ready_quietly();
      ncclCommDestroy(comm_);  // after an error: abort semantics are fine, nothing is waited for
    }
    if (scratch_) cudaFree(scratch_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  std::string_view backend() const override { return "nccl"; }
  Device buffers() const override { return Device::cuda; }

 protected:
  void do_all_reduce_sum(void* buf, int64_t n, DType type) override {
    check(ncclAllReduce(buf, buf, size_t(n), nccl_type(type), ncclSum, comm_, queue()),
          "ncclAllReduce");
    finish("ncclAllReduce");
  }
  void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) override {
    check(ncclReduceScatter(send, recv, size_t(count), nccl_type(type), ncclSum, comm_, queue()),
          "ncclReduceScatter");
    finish("ncclReduceScatter");
  }
  void do_all_gather(const void* send, void* recv, int64_t count, DType type) override {
    check(ncclAllGather(send, recv, size_t(count), nccl_type(type), comm_, queue()),
          "ncclAllGather");
    finish("ncclAllGather");
  }
  void do_broadcast(void* buf, int64_t n, DType type, int root) override {
    check(ncclBroadcast(buf, buf, size_t(n), nccl_type(type), root, comm_, queue()),
          "ncclBroadcast");
    finish("ncclBroadcast");
  }
  void do_barrier() override {  // a one-element all-reduce is NCCL's barrier
    check(ncclAllReduce(scratch_, scratch_, 1, ncclUint8, ncclSum, comm_, queue()),
          "ncclAllReduce (barrier)");
    finish("barrier");
  }
  void do_host_all_reduce_f64(double* v, int64_t n) override {
    void* d = staging(size_t(n) * sizeof(double));
    MG_CUDA(cudaMemcpy(d, v, size_t(n) * sizeof(double), cudaMemcpyHostToDevice));
    do_all_reduce_sum(d, n, DType::f64);
    MG_CUDA(cudaMemcpy(v, d, size_t(n) * sizeof(double), cudaMemcpyDeviceToHost));
  }
  void do_host_all_gather_bytes(const void* send, void* recv, int64_t bytes) override {
    char* d = static_cast<char*>(staging(size_t(bytes) * size_t(world() + 1)));
    MG_CUDA(cudaMemcpy(d, send, size_t(bytes), cudaMemcpyHostToDevice));
    do_all_gather(d, d + bytes, bytes, DType::u8);
    MG_CUDA(cudaMemcpy(recv, d + bytes, size_t(bytes) * size_t(world()), cudaMemcpyDeviceToHost));
  }
  void set_stream(CudaStream s) override { user_stream_ = s; }
  void abort_from_watchdog() override {
    if (comm_) ncclCommAbort(comm_);
  }

 private:
  static constexpr size_t kScratchBytes = size_t(1) << 20;

  void check(ncclResult_t rc, const char* call) {
    if (rc == ncclSuccess || rc == ncclInProgress) return;
    fail("nccl", call, " failed on rank ", rank(), ": ", ncclGetErrorString(rc),
         comm_ ? std::string(" (") + ncclGetLastError(comm_) + ")" : std::string());
  }
  // Polls until the communicator is no longer busy (init or a call enqueued non-blocking).
  void wait_ready(const char* what, double timeout_s) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) check(state, what);
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (timeout_s > 0 && waited > timeout_s) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        fail("nccl", what, " on rank ", rank(), " of ", world(), " did not finish in ", timeout_s,
             " s (a rank is missing or cannot be reached)");
      }
      std::this_thread::yield();
    }
  }
  void wait_ready_quietly() {
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) ncclCommGetAsyncError(comm_, &state);
  }
  // The stream to enqueue on: the caller's, or our own once the device is idle.
  cudaStream_t queue() {
    if (user_stream_) return user_stream_;
    MG_CUDA(cudaDeviceSynchronize());
    return stream_;
  }
  // Waits for the enqueued collective: the stream drains, or NCCL reports an error.
  void finish(const char* what) {
    wait_ready(what, 0);  // the watchdog bounds this wait
    for (;;) {
      const cudaError_t q = cudaStreamQuery(user_stream_ ? user_stream_ : stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) MG_CUDA(q);
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) check(state, what);
      std::this_thread::yield();
    }
  }
  void* staging(size_t bytes) {
    if (bytes > scratch_bytes_) {
      MG_CUDA(cudaFree(scratch_));
      MG_CUDA(cudaMalloc(&scratch_, bytes));
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }

  std::unique_ptr<Comm> mpi_;  // when the id came by MPI (finalised after NCCL is gone)
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t user_stream_ = nullptr;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = kScratchBytes;
};

}  // namespace

bool built_with_nccl() {
  return true;
}

std::unique_ptr<Comm> make_nccl_comm(const RankInfo& info, double timeout_s) {
  return std::make_unique<NcclComm>(info, timeout_s);
}

#else

bool built_with_nccl() {
  return false;
}

std::unique_ptr<Comm> make_nccl_comm(const RankInfo& info, double) {
  fail(info.source, "this muongpt was built without NCCL, which CUDA runs on several GPUs need");
}

#endif

}  // namespace muongpt
