// The MPI communicator (host memory): MPI_COMM_WORLD of an mpirun/srun launch.
#include <cstdlib>
#include <exception>

#include "core/comm.h"
#include "core/error.h"

#ifdef MUONGPT_HAVE_MPI
#include <mpi.h>
#endif

namespace muongpt {

#ifdef MUONGPT_HAVE_MPI

namespace {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f64:
      return MPI_DOUBLE;
    case DType::f32:
      return MPI_FLOAT;
    case DType::i64:
      return MPI_INT64_T;
    case DType::i32:
      return MPI_INT32_T;
    case DType::u16:
      return MPI_UINT16_T;
    case DType::u8:
      return MPI_UINT8_T;
    case DType::bf16:
      break;
  }
  fail("mpi", "no MPI reduction for ", dtype_name(t), " buffers");
}

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("mpi", call, " failed: ", msg);
}

// MPI counts are int: larger buffers go in pieces.
constexpr int64_t kMaxCount = int64_t(1) << 30;

bool g_we_initialised = false;

class MpiComm final : public Comm {
 public:
  MpiComm(int rank, int world, double timeout_s) : Comm(rank, world, timeout_s) {
    start_watchdog();
  }
  ~MpiComm() override {
    // Finalise only on a normal exit: during an exception another rank may still be inside a
    // collective, and MPI_Finalize would wait for it (abort_job() takes the job down instead).
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (g_we_initialised && !finalized && std::uncaught_exceptions() == 0) MPI_Finalize();
  }
  std::string_view backend() const override { return "mpi"; }
  Device buffers() const override { return Device::cpu; }

 protected:
  void do_all_reduce_sum(void* buf, int64_t n, DType type) override {
    char* p = static_cast<char*>(buf);
    for (int64_t done = 0; done < n; done += kMaxCount) {
      const int64_t c = std::min(kMaxCount, n - done);
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * int64_t(dtype_size(type)), int(c),
                          mpi_type(type), MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
  }
  void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) override {
    MG_CHECK(count <= kMaxCount, "reduce_scatter of ", count, " elements per rank");
    check(MPI_Reduce_scatter_block(send, recv, int(count), mpi_type(type), MPI_SUM, MPI_COMM_WORLD),
          "MPI_Reduce_scatter_block");
  }
  void do_all_gather(const void* send, void* recv, int64_t count, DType type) override {
    MG_CHECK(count <= kMaxCount, "all_gather of ", count, " elements per rank");
    check(MPI_Allgather(send, int(count), mpi_type(type), recv, int(count), mpi_type(type),
                        MPI_COMM_WORLD),
          "MPI_Allgather");
  }
  void do_broadcast(void* buf, int64_t n, DType type, int root) override {
    char* p = static_cast<char*>(buf);
    for (int64_t done = 0; done < n; done += kMaxCount) {
      const int64_t c = std::min(kMaxCount, n - done);
      check(MPI_Bcast(p + done * int64_t(dtype_size(type)), int(c), mpi_type(type), root,
                      MPI_COMM_WORLD),
            "MPI_Bcast");
    }
  }
  void do_barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
};

}  // namespace

bool built_with_mpi() {
  return true;
}

std::unique_ptr<Comm> make_mpi_comm(const RankInfo& info, double timeout_s) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_we_initialised = true;
    // Errors come back as codes (and become an Error naming the call) instead of aborting.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != info.rank || size != info.world)
    fail("mpi", "MPI says rank ", rank, " of ", size, " but ", info.source, " says rank ",
         info.rank, " of ", info.world, " (launch with one of them, not a mix)");
  return std::make_unique<MpiComm>(rank, size, timeout_s);
}

void abort_job(int code) {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  int size = 1;
  if (initialised && !finalized) MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (initialised && !finalized && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

#else  // no MPI in this build

bool built_with_mpi() {
  return false;
}

std::unique_ptr<Comm> make_mpi_comm(const RankInfo& info, double) {
  fail(info.source, "rank ", info.rank, " of ", info.world,
       ": this muongpt was built without MPI, which multi-process CPU runs need (apt-get install "
       "libopenmpi-dev, then rebuild)");
}

void abort_job(int) {}

#endif

}  // namespace muongpt
