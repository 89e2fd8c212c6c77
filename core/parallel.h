// A small persistent thread pool for the CPU ops' row loops. Rows are split into contiguous,
// equal chunks (one per thread), so results never depend on timing, only on the data. Idle
// workers sleep on a condition variable (they do not spin), which keeps them out of the way of
// OpenBLAS's own threads between calls. Threads: $MUONGPT_THREADS, else the hardware count.
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

}  // namespace muongpt
