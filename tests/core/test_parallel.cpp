// parallel_tasks(): every task runs once, on a worker below cpu_threads(), with OpenBLAS
// single-threaded while the tasks run concurrently and its thread count restored afterwards;
// calls from inside a task run inline.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "core/gemm.h"
#include "core/parallel.h"

namespace muongpt {
namespace {

TEST(Parallel, TasksRunOnceEachWithSingleThreadedBlas) {
  const int blas_before = blas_threads();
  const int64_t n = 37;
  std::vector<std::atomic<int>> runs(n);
  std::atomic<int> bad_worker{0}, most_blas{0}, nested{0};
  parallel_tasks(n, [&](int64_t i, int worker) {
    ++runs[size_t(i)];
    if (worker < 0 || worker >= cpu_threads()) ++bad_worker;
    const int b = blas_threads();
    for (int seen = most_blas; b > seen && !most_blas.compare_exchange_weak(seen, b);) {
    }
    parallel_tasks(3, [&](int64_t, int w) { nested += w == 0 ? 1 : 100; });
  });
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(runs[size_t(i)], 1) << i;
  EXPECT_EQ(bad_worker, 0);
  EXPECT_EQ(nested, 3 * n);  // inline, as worker 0
  if (cpu_threads() > 1) EXPECT_EQ(most_blas, 1);
  EXPECT_EQ(blas_threads(), blas_before);

  int calls = 0;
  parallel_tasks(0, [&](int64_t, int) { ++calls; });
  parallel_tasks(1, [&](int64_t i, int w) { calls += 1 + int(i) + w; });
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace muongpt
