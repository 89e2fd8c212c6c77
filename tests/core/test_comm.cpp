// Rank discovery from every launcher's variables, the one-rank communicator, the collective
// watchdog's bound, and the TCP and file rendezvous (threads stand in for ranks).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "core/rendezvous.h"
#include "testing/errors.h"

namespace muongpt {
namespace {

using testing::error_of;
using Env = std::map<std::string, std::string>;

RankInfo discover(const Env& env, RankFlags flags = {}) {
  return discover_ranks(flags, [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(RankDiscovery, EachLauncher) {
  RankInfo r = discover({});
  EXPECT_EQ(r.source, "single");
  EXPECT_EQ(r.world, 1);
  EXPECT_FALSE(r.host.empty());

  r = discover({{"RANK", "3"},
                {"WORLD_SIZE", "8"},
                {"LOCAL_RANK", "1"},
                {"LOCAL_WORLD_SIZE", "2"},
                {"MASTER_ADDR", "10.0.0.1"}});
  EXPECT_EQ(r.source, "torchrun");
  EXPECT_EQ(r.rank, 3);
  EXPECT_EQ(r.world, 8);
  EXPECT_EQ(r.local_rank, 1);
  EXPECT_EQ(r.local_world, 2);
  EXPECT_EQ(r.master_addr, "10.0.0.1");
  EXPECT_NE(r.describe().find("rank 3/8 (local 1/2) on host "), std::string::npos);
  EXPECT_NE(r.describe().find(", from torchrun"), std::string::npos);

  r = discover({{"OMPI_COMM_WORLD_RANK", "5"},
                {"OMPI_COMM_WORLD_SIZE", "6"},
                {"OMPI_COMM_WORLD_LOCAL_RANK", "2"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "3"}});
  EXPECT_EQ(r.source, "openmpi");
  EXPECT_EQ(r.rank, 5);
  EXPECT_EQ(r.local_rank, 2);
  EXPECT_EQ(r.local_world, 3);

  r = discover({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(r.source, "slurm");
  EXPECT_EQ(r.rank, 1);
  EXPECT_EQ(r.world, 4);
  EXPECT_EQ(r.local_world, 4);  // unknown per-node count: assume one host
}

TEST(RankDiscovery, FlagsWinThenTorchrunThenMpiThenSlurm) {
  const Env all = {{"RANK", "1"},
                   {"WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_RANK", "2"},
                   {"OMPI_COMM_WORLD_SIZE", "3"},
                   {"SLURM_PROCID", "3"},
                   {"SLURM_NTASKS", "4"}};
  EXPECT_EQ(discover(all).source, "torchrun");
  EXPECT_EQ(discover(all, {.rank = 0, .world = 5}).source, "flags");
  EXPECT_EQ(discover(all, {.rank = 0, .world = 5}).world, 5);
  Env mpi_slurm = all;
  mpi_slurm.erase("RANK");
  EXPECT_EQ(discover(mpi_slurm).source, "openmpi");
  mpi_slurm.erase("OMPI_COMM_WORLD_RANK");
  EXPECT_EQ(discover(mpi_slurm).source, "slurm");
}

TEST(RankDiscovery, BadValuesAreClearErrors) {
  EXPECT_EQ(error_of([] {
              discover({{"RANK", "one"}, {"WORLD_SIZE", "2"}});
            }),
            "torchrun: RANK='one' is not a non-negative integer");
  EXPECT_EQ(error_of([] {
              discover({{"RANK", "2"}, {"WORLD_SIZE", "2"}});
            }),
            "torchrun: rank 2 is outside the world of 2 ranks");
  EXPECT_EQ(error_of([] { discover({}, {.rank = 1}); }),
            "flags: --rank and --world-size must be given together (got --rank 1 --world-size -1)");
  EXPECT_EQ(error_of([] {
              discover({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}});
            }),
            "slurm: world size 0 (must be at least 1)");
}

TEST(SingleComm, CollectivesAreIdentities) {
  auto c = make_single_comm();
  EXPECT_EQ(c->world(), 1);
  float x[3] = {1, 2, 3}, y[3] = {};
  c->all_reduce_sum(x, 3, DType::f32);
  c->reduce_scatter_sum(x, y, 3, DType::f32);
  EXPECT_EQ(y[2], 3.0f);
  c->all_gather(x, y, 3, DType::f32);
  EXPECT_EQ(y[1], 2.0f);
  EXPECT_EQ(c->sum(2.5), 2.5);
  EXPECT_TRUE(c->any(true));
  EXPECT_EQ(c->all_gather_strings("abc"), std::vector<std::string>{"abc"});
}

// A communicator whose barrier never returns: the peer that never arrives.
class StuckComm final : public Comm {
 public:
  StuckComm() : Comm(0, 2, 0.5) { start_watchdog(); }
  std::string_view backend() const override { return "stuck"; }
  Device buffers() const override { return Device::cpu; }

 protected:
  void do_all_reduce_sum(void*, int64_t, DType) override {}
  void do_reduce_scatter_sum(const void*, void*, int64_t, DType) override {}
  void do_all_gather(const void*, void*, int64_t, DType) override {}
  void do_broadcast(void*, int64_t, DType, int) override {}
  void do_barrier() override { std::this_thread::sleep_for(std::chrono::seconds(30)); }
};

TEST(CommWatchdog, EndsAStuckCollectiveWithinTheTimeout) {
  int err[2];
  ASSERT_EQ(pipe(err), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(err[1], STDERR_FILENO);
    StuckComm c;
    c.barrier();
    std::_Exit(0);  // not reached: the watchdog ends the process first
  }
  close(err[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char buf[512] = {};
  const ssize_t n = read(err[0], buf, sizeof buf - 1);
  close(err[0]);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_LT(seconds, 5.0);  // timeout 0.5 s + the watchdog's 0.1 s poll
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf),
            "muongpt: error: rank 0 of 2: barrier has waited 0.5 s for the other ranks (one of "
            "them died, hangs or was stopped); ending this process\n");
}

// Runs fn(rank) for every rank on its own thread; returns what each got (or its error).
std::vector<std::string> on_threads(int world, const std::function<std::string(int)>& fn) {
  std::vector<std::string> got(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = world - 1; r >= 0; --r)  // clients first: they must retry until rank 0 listens
    threads.emplace_back([&, r] {
      try {
        got[size_t(r)] = fn(r);
      } catch (const Error& e) {
        got[size_t(r)] = std::string("error: ") + e.what();
      }
    });
  for (auto& t : threads) t.join();
  return got;
}

std::string binary_blob() {
  std::string b(128, '\0');
  for (size_t i = 0; i < b.size(); ++i) b[i] = char((i * 37) % 256);  // zeros and high bytes too
  return b;
}

TEST(Rendezvous, TcpHandsRankZerosBlobToEveryRank) {
  const int port = 20000 + int(getpid() % 20000);
  const std::string blob = binary_blob();
  const auto got = on_threads(
      4, [&](int r) { return rendezvous_tcp(r, 4, "127.0.0.1", port, r == 0 ? blob : "", 20); });
  for (const auto& g : got) EXPECT_EQ(g, blob);
}

TEST(Rendezvous, TcpGivesUpWhenRankZeroNeverComes) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string e = error_of([] { rendezvous_tcp(1, 2, "127.0.0.1", 1, "", 0.5); });
  EXPECT_EQ(e.rfind("rendezvous (TCP 127.0.0.1:1): rank 1 could not reach rank 0 in 0.5 s", 0), 0u)
      << e;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5);
}

TEST(Rendezvous, FileHandsRankZerosBlobToEveryRankAndRefusesLeftovers) {
  const auto path =
      (std::filesystem::temp_directory_path() / ("muongpt_rdv_" + std::to_string(getpid())))
          .string();
  std::filesystem::remove(path);
  const std::string blob = binary_blob();
  const auto got =
      on_threads(3, [&](int r) { return rendezvous_file(r, 3, path, r == 0 ? blob : "", 20); });
  for (const auto& g : got) EXPECT_EQ(g, blob);
  EXPECT_EQ(error_of([&] { rendezvous_file(0, 3, path, blob, 1); }),
            "rendezvous file " + path +
                ": already exists (left by an earlier job?): remove it, or give this job a new "
                "path");
  EXPECT_EQ(error_of([&] { rendezvous_file(1, 2, path, "", 1); }),
            "rendezvous file " + path +
                ": was written by a job of 3 ranks, this one has 2 (a leftover? remove it)");
  std::filesystem::remove(path);
  EXPECT_EQ(error_of([&] { rendezvous_file(1, 2, path, "", 0.2); }),
            "rendezvous file " + path + ": rank 1 waited 0.2 s and rank 0 never wrote it");
}

}  // namespace
}  // namespace muongpt
