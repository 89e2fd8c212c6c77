// Ranks as threads of one process: a Comm whose collectives meet in shared host memory, so the
// multi-rank code paths (the sharded optimizers, telemetry's Gram sums) run in a test without
// mpirun, and on one GPU without NCCL (which refuses two ranks on the same device). Buffers are
// host memory, or device memory moved through host staging by the `copy` function the test
// gives. Sums run in rank order (for two ranks a + b, which is what MPI and NCCL compute too).
//
//   ThreadGroup group(2);
//   on_rank_threads(2, [&](int rank) { ThreadComm comm(group, rank); ... });
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/comm.h"
#include "core/error.h"

namespace muongpt::testing {

// What the ranks of one group share: a reusable barrier and one staging buffer per rank.
class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), staging_(size_t(world)) {}
  int world() const { return world_; }
  std::vector<char>& staging(int rank) { return staging_[size_t(rank)]; }
  // Waits for every rank; a rank that never comes (a test that failed on another thread) makes
  // the others fail after 60 s instead of hanging the test run.
  void barrier() {
    std::unique_lock lock(mu_);
    const int64_t generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else if (!cv_.wait_for(lock, std::chrono::seconds(60),
                             [&] { return generation_ != generation; })) {
      fail("thread comm", "a rank did not reach the barrier within 60 s");
    }
  }

 private:
  int world_;
  std::vector<std::vector<char>> staging_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadComm final : public Comm {
 public:
  // copy(dst, src, bytes): between the buffers the collectives get and host memory (memcpy for
  // host buffers; cudaMemcpy for device ones).
  using Copy = std::function<void(void*, const void*, size_t)>;
  ThreadComm(ThreadGroup& group, int rank, Device buffers = Device::cpu, Copy copy = nullptr)
      : Comm(rank, group.world(), 0),
        group_(group),
        buffers_(buffers),
        copy_(copy ? std::move(copy)
                   : Copy([](void* d, const void* s, size_t n) { std::memcpy(d, s, n); })) {}
  std::string_view backend() const override { return "threads"; }
  Device buffers() const override { return buffers_; }

 protected:
  void do_all_reduce_sum(void* buf, int64_t n, DType type) override {
    post(buf, n * int64_t(dtype_size(type)));
    reduce_into(buf, 0, n, type);
    group_.barrier();
  }
  void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) override {
    post(send, int64_t(world()) * count * int64_t(dtype_size(type)));
    reduce_into(recv, int64_t(rank()) * count, count, type);
    group_.barrier();
  }
  void do_all_gather(const void* send, void* recv, int64_t count, DType type) override {
    const size_t bytes = size_t(count) * dtype_size(type);
    post(send, int64_t(bytes));
    for (int r = 0; r < world(); ++r)
      copy_(static_cast<char*>(recv) + size_t(r) * bytes, group_.staging(r).data(), bytes);
    group_.barrier();
  }
  void do_broadcast(void* buf, int64_t n, DType type, int root) override {
    const size_t bytes = size_t(n) * dtype_size(type);
    post(buf, int64_t(bytes));
    copy_(buf, group_.staging(root).data(), bytes);
    group_.barrier();
  }
  void do_barrier() override { group_.barrier(); }
  void do_host_all_reduce_f64(double* v, int64_t n) override {
    stage_host(v, n * 8);
    std::vector<double> sum(size_t(n), 0.0);
    for (int r = 0; r < world(); ++r)
      for (int64_t i = 0; i < n; ++i)
        sum[size_t(i)] += reinterpret_cast<const double*>(group_.staging(r).data())[i];
    std::memcpy(v, sum.data(), size_t(n) * 8);
    group_.barrier();
  }
  void do_host_all_gather_bytes(const void* send, void* recv, int64_t bytes) override {
    stage_host(send, bytes);
    for (int r = 0; r < world(); ++r)
      std::memcpy(static_cast<char*>(recv) + r * bytes, group_.staging(r).data(), size_t(bytes));
    group_.barrier();
  }

 private:
  // This rank's buffer into its staging, then wait for every rank's.
  void post(const void* buf, int64_t bytes) {
    group_.staging(rank()).resize(size_t(bytes));
    copy_(group_.staging(rank()).data(), buf, size_t(bytes));
    group_.barrier();
  }
  void stage_host(const void* buf, int64_t bytes) {
    group_.staging(rank()).assign(static_cast<const char*>(buf),
                                  static_cast<const char*>(buf) + bytes);
    group_.barrier();
  }
  // out[0..n) ← Σ over ranks, in rank order, of elements [first, first + n) of their staging.
  void reduce_into(void* out, int64_t first, int64_t n, DType type) {
    std::vector<char> sum(size_t(n) * dtype_size(type));
    if (type == DType::f32)
      add_all<float>(sum.data(), first, n);
    else if (type == DType::f64)
      add_all<double>(sum.data(), first, n);
    else
      fail("thread comm", "sums of ", dtype_name(type), " are not supported");
    copy_(out, sum.data(), sum.size());
  }
  template <typename T>
  void add_all(char* out, int64_t first, int64_t n) {
    T* o = reinterpret_cast<T*>(out);
    for (int r = 0; r < world(); ++r) {
      const T* s = reinterpret_cast<const T*>(group_.staging(r).data()) + first;
      for (int64_t i = 0; i < n; ++i) o[i] = r == 0 ? s[i] : o[i] + s[i];
    }
  }

  ThreadGroup& group_;
  Device buffers_;
  Copy copy_;
};

// Runs fn(rank) on `world` threads and rethrows the first exception any of them threw. A rank
// that throws leaves the others waiting at the next barrier, so fn should not throw in a test
// that is meant to pass (gtest assertions record failures without throwing).
inline void on_rank_threads(int world, const std::function<void(int)>& fn) {
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (std::thread& t : threads) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace muongpt::testing
