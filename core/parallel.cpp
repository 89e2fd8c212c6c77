#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/gemm.h"

namespace muongpt {

namespace {

thread_local bool t_in_pool_task = false;

class Pool {
 public:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
  }
  ~Pool() {
    {
      std::lock_guard lock(mu_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i) for i in [0, size()) with the caller as participant 0.
  void run(const std::function<void(int)>& task) {
    std::unique_lock call(call_mu_);  // one parallel region at a time
    {
      std::lock_guard lock(mu_);
      task_ = &task;
      pending_ = size() - 1;
      ++generation_;
    }
    wake_.notify_all();
    t_in_pool_task = true;
    task(0);
    t_in_pool_task = false;
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
  }

 private:
  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* task;
      {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        task = task_;
      }
      t_in_pool_task = true;
      (*task)(index);
      t_in_pool_task = false;
      std::lock_guard lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mu_, call_mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

Pool& pool() {
  static Pool p(cpu_threads());
  return p;
}

}  // namespace

namespace {
int g_ranks_on_host = 1;
}

int cpu_threads() {
  static const int n = [] {
    if (const char* env = std::getenv("MUONGPT_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return std::min(v, 256);
    }
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / g_ranks_on_host);
  }();
  return n;
}

void share_cpu_threads(int ranks_on_host) {
  g_ranks_on_host = std::max(1, ranks_on_host);
  set_blas_threads(cpu_threads());
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body, int64_t min_chunk) {
  const int64_t chunks = std::min<int64_t>(cpu_threads(), n / std::max<int64_t>(min_chunk, 1));
  if (chunks <= 1 || t_in_pool_task) {
    if (n > 0) body(0, n);
    return;
  }
  Pool& p = pool();
  const int64_t parts = std::min<int64_t>(chunks, p.size());
  p.run([&](int i) {
    if (i >= parts) return;
    const int64_t begin = n * i / parts, end = n * (i + 1) / parts;
    if (begin < end) body(begin, end);
  });
}

void parallel_tasks(int64_t n, const std::function<void(int64_t, int)>& task) {
  const int64_t workers = std::min<int64_t>(cpu_threads(), n);
  if (workers <= 1 || t_in_pool_task) {
    for (int64_t i = 0; i < n; ++i) task(i, 0);
    return;
  }
  struct SingleThreadedBlas {
    int before = blas_threads();
    SingleThreadedBlas() { set_blas_threads(1); }
    ~SingleThreadedBlas() { set_blas_threads(before); }
  } blas;
  std::atomic<int64_t> next{0};
  pool().run([&](int worker) {
    if (worker >= workers) return;
    for (int64_t i = next++; i < n; i = next++) task(i, worker);
  });
}

}  // namespace muongpt
