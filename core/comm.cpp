#include "core/comm.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace muongpt {

namespace {

const char* real_env(const char* name) {
  return std::getenv(name);
}

// A rank-like variable: absent → −1; present → a non-negative int, else an Error.
int env_int(const std::function<const char*(const char*)>& env, const char* name,
            const std::string& source) {
  const char* v = env(name);
  if (!v) return -1;
  char* end = nullptr;
  errno = 0;
  long x = std::strtol(v, &end, 10);
  if (errno || end == v || *end != '\0' || x < 0 || x > std::numeric_limits<int>::max())
    fail(source, name, "='", v, "' is not a non-negative integer");
  return int(x);
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string RankInfo::describe() const {
  static const std::pair<const char*, const char*> kSources[] = {{"flags", "flags"},
                                                                 {"torchrun", "torchrun"},
                                                                 {"openmpi", "OpenMPI"},
                                                                 {"slurm", "Slurm"},
                                                                 {"single", "one process"}};
  std::string from = source;
  for (auto [key, name] : kSources)
    if (source == key) from = name;
  return "rank " + std::to_string(rank) + "/" + std::to_string(world) + " (local " +
         std::to_string(local_rank) + "/" + std::to_string(local_world) + ") on host " + host +
         ", from " + from;
}

RankInfo discover_ranks(const RankFlags& flags,
                        const std::function<const char*(const char*)>& env_in) {
  const auto env = env_in ? env_in : std::function<const char*(const char*)>(real_env);
  RankInfo info;
  info.host = hostname();
  struct Source {
    const char* name;
    const char *rank, *world, *local_rank, *local_world;
  };
  static const Source kSources[] = {
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
      {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
       "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
  };
  if (flags.rank >= 0 || flags.world >= 0) {
    if (flags.rank < 0 || flags.world < 1)
      fail("flags", "--rank and --world-size must be given together (got --rank ", flags.rank,
           " --world-size ", flags.world, ")");
    info.source = "flags";
    info.rank = flags.rank;
    info.world = flags.world;
    info.local_rank = flags.local_rank >= 0 ? flags.local_rank : flags.rank;
    info.local_world = flags.local_rank >= 0 ? -1 : flags.world;
  } else {
    for (const Source& s : kSources) {
      const int rank = env_int(env, s.rank, s.name), world = env_int(env, s.world, s.name);
      if (rank < 0 || world < 0) continue;
      info.source = s.name;
      info.rank = rank;
      info.world = world;
      info.local_rank = env_int(env, s.local_rank, s.name);
      if (info.local_rank < 0) info.local_rank = rank;
      info.local_world = env_int(env, s.local_world, s.name);
      break;
    }
  }
  if (info.world < 1) fail(info.source, "world size ", info.world, " (must be at least 1)");
  if (info.rank >= info.world)
    fail(info.source, "rank ", info.rank, " is outside the world of ", info.world, " ranks");
  if (info.local_world < 1) info.local_world = info.world;  // unknown: assume one host
  if (info.local_rank >= info.local_world) info.local_world = info.local_rank + 1;
  if (const char* addr = env("MASTER_ADDR")) info.master_addr = addr;
  return info;
}

bool launched_by_mpi(const std::function<const char*(const char*)>& env_in) {
  const auto env = env_in ? env_in : std::function<const char*(const char*)>(real_env);
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK");
}

// --- Comm ------------------------------------------------------------------------------------

class Comm::Watch {
 public:
  Watch(Comm& c, const char* op) : c_(c), start_ns_(now_ns()) {
    c_.busy_op_.store(op);
    c_.busy_since_ns_.store(start_ns_);
  }
  ~Watch() {
    c_.busy_since_ns_.store(0);
    c_.collective_ns_ += now_ns() - start_ns_;
  }

 private:
  Comm& c_;
  int64_t start_ns_;
};

Comm::Comm(int rank, int world, double timeout_s)
    : rank_(rank), world_(world), timeout_s_(timeout_s) {}

Comm::~Comm() {
  stop_ = true;
  if (watchdog_.joinable()) watchdog_.join();
}

void Comm::start_watchdog() {
  if (timeout_s_ > 0 && world_ > 1 && !watchdog_.joinable())
    watchdog_ = std::thread([this] { watchdog_loop(); });
}

void Comm::watchdog_loop() {
  const int64_t limit_ns = int64_t(timeout_s_ * 1e9);
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t since = busy_since_ns_.load();
    if (since == 0 || now_ns() - since < limit_ns) continue;
    std::fprintf(stderr,
                 "muongpt: error: rank %d of %d: %s has waited %g s for the other ranks (one "
                 "of them died, hangs or was stopped); ending this process\n",
                 rank_, world_, busy_op_.load(), timeout_s_);
    std::fflush(stderr);
    abort_from_watchdog();
    std::_Exit(3);
  }
}

void Comm::all_reduce_sum(void* buf, int64_t n, DType type) {
  if (n == 0) return;
  Watch w(*this, "all_reduce");
  do_all_reduce_sum(buf, n, type);
}

void Comm::reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) {
  if (count == 0) return;
  Watch w(*this, "reduce_scatter");
  do_reduce_scatter_sum(send, recv, count, type);
}

void Comm::all_gather(const void* send, void* recv, int64_t count, DType type) {
  if (count == 0) return;
  Watch w(*this, "all_gather");
  do_all_gather(send, recv, count, type);
}

void Comm::broadcast(void* buf, int64_t n, DType type, int root) {
  MG_CHECK(root >= 0 && root < world_, "broadcast root ", root, " of ", world_);
  if (n == 0) return;
  Watch w(*this, "broadcast");
  do_broadcast(buf, n, type, root);
}

void Comm::barrier() {
  Watch w(*this, "barrier");
  do_barrier();
}

void Comm::host_sum(double* values, int64_t n) {
  if (world_ == 1 || n == 0) return;
  Watch w(*this, "all_reduce");
  do_host_all_reduce_f64(values, n);
}

double Comm::sum(double value) {
  host_sum(&value, 1);
  return value;
}

bool Comm::any(bool value) {
  return sum(value ? 1.0 : 0.0) > 0;
}

std::vector<std::string> Comm::all_gather_strings(const std::string& mine) {
  if (world_ == 1) return {mine};
  Watch w(*this, "all_gather");
  // The lengths first, then every string padded to the longest.
  const int64_t my_len = int64_t(mine.size());
  std::vector<int64_t> lengths(static_cast<size_t>(world_));
  do_host_all_gather_bytes(&my_len, lengths.data(), sizeof my_len);
  int64_t longest = 1;
  for (int64_t len : lengths) longest = std::max(longest, len);
  std::vector<char> send(size_t(longest), 0), recv(send.size() * size_t(world_));
  std::memcpy(send.data(), mine.data(), mine.size());
  do_host_all_gather_bytes(send.data(), recv.data(), longest);
  std::vector<std::string> out(static_cast<size_t>(world_));
  for (int r = 0; r < world_; ++r)
    out[size_t(r)].assign(recv.data() + size_t(r) * send.size(), size_t(lengths[size_t(r)]));
  return out;
}

void Comm::host_all_gather(const void* send, void* recv, int64_t bytes) {
  if (bytes == 0) return;
  if (world_ == 1) {
    std::memmove(recv, send, size_t(bytes));
    return;
  }
  Watch w(*this, "all_gather");
  constexpr int64_t kPiece = int64_t(1) << 28;  // bytes per rank per collective
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  std::vector<char> pieces(size_t(std::min(kPiece, bytes)) * size_t(world_));
  for (int64_t at = 0; at < bytes; at += kPiece) {
    const int64_t n = std::min(kPiece, bytes - at);
    do_host_all_gather_bytes(in + at, pieces.data(), n);
    for (int r = 0; r < world_; ++r)
      std::memcpy(out + int64_t(r) * bytes + at, pieces.data() + int64_t(r) * n, size_t(n));
  }
}

// --- a world of one ----------------------------------------------------------------------------

namespace {

class SingleComm final : public Comm {
 public:
  SingleComm() : Comm(0, 1, 0) {}
  std::string_view backend() const override { return "single"; }
  Device buffers() const override { return Device::cpu; }

 protected:
  void do_all_reduce_sum(void*, int64_t, DType) override {}
  void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) override {
    if (send != recv) std::memmove(recv, send, size_t(count) * dtype_size(type));
  }
  void do_all_gather(const void* send, void* recv, int64_t count, DType type) override {
    if (send != recv) std::memmove(recv, send, size_t(count) * dtype_size(type));
  }
  void do_broadcast(void*, int64_t, DType, int) override {}
  void do_barrier() override {}
};

}  // namespace

std::unique_ptr<Comm> make_single_comm() {
  return std::make_unique<SingleComm>();
}

}  // namespace muongpt
