#pragma once
// The OpenMP thread count for one call into the core: the one mechanism for thread counts.
// Every entry point (GramAccumulator::update, MatchEngine's queries, MinimalMatchSearch) opens
// a ThreadScope with the caller's num_threads; OpenMP regions and Eigen's own GEMM threads
// inherit it (a kernel that needs the count itself receives the same value as an argument).

#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nsm {

// Sets the calling thread's OpenMP thread count (a per-thread setting) for one call.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) {
#ifdef _OPENMP
    saved_ = omp_get_max_threads();
    omp_set_num_threads(std::max(threads, 1));
#else
    (void)threads;
#endif
  }
  ~ThreadScope() {
#ifdef _OPENMP
    omp_set_num_threads(saved_);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_ = 1;
};

}  // namespace nsm
