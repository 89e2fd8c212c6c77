// A small persistent thread pool for the CPU ops' row loops. Rows are split into contiguous,
// equal chunks (one per thread), so results never depend on timing, only on the data
// (parallel_tasks' tasks are independent, each run whole by one worker). Idle workers sleep on a
// condition variable (they do not spin), which keeps them out of the way of OpenBLAS's own
// threads between calls. Threads: $MUONGPT_THREADS, else the hardware count.
#pragma once

#include <cstdint>
#include <functional>

namespace muongpt {

int cpu_threads();
// Several ranks on one host share its cores: unless $MUONGPT_THREADS is set, each uses
// hardware / ranks_on_host threads (at least 1), here and in OpenBLAS. Call before any CPU work.
void share_cpu_threads(int ranks_on_host);
// Calls body(begin, end) over a partition of [0, n) into at most cpu_threads() chunks, and
// returns when all are done. Runs inline when n is small or from inside another parallel_for.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body,
                  int64_t min_chunk = 1);
// Calls task(i, worker) for every i in [0, n), each task run whole by the next free worker
// (worker < cpu_threads()), with OpenBLAS single-threaded meanwhile: for many small BLAS-bound
// jobs (the Muon matrices), one single-threaded BLAS per job beats one multi-threaded BLAS per
// call. Which worker takes a task depends on timing, so a task may use per-worker memory only as
// scratch that it writes before it reads. Runs inline, in order, as worker 0 (BLAS threads left
// alone) when n or cpu_threads() is 1, or from inside another parallel region.
void parallel_tasks(int64_t n, const std::function<void(int64_t, int)>& task);

}  // namespace muongpt
