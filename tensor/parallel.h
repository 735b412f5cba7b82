// parallel_for: splits [0, n) into one contiguous chunk per OpenMP thread when
// the work is large enough. The split depends only on n and the thread count,
// so results are deterministic for a fixed thread count. The body must not
// throw: validate before entering.
#pragma once
#include <algorithm>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace moegrad {

// Work below this many elementary operations runs on the calling thread.
constexpr int64_t kParallelGrain = 32768;

// Grain for items that each cost `work` elementary operations: enough items
// per thread to cover the cost of waking the threads.
inline int64_t grain_for(int64_t work) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work, 1)); }

template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
#ifdef _OPENMP
  if (grain < 1) grain = 1;
  int64_t want = (n + grain - 1) / grain;
  if (want > 1 && !omp_in_parallel()) {
    int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), want));
    if (threads > 1) {
#pragma omp parallel num_threads(threads)
      {
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t chunk = (n + nt - 1) / nt;
        int64_t begin = t * chunk, end = std::min(n, begin + chunk);
        if (begin < end) f(begin, end);
      }
      return;
    }
  }
#else
  (void)grain;
#endif
  f(int64_t{0}, n);
}

}  // namespace moegrad
