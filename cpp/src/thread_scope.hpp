#pragma once
// The OpenMP thread count for one call into the core: the one mechanism for thread counts.
// Every entry point (GramAccumulator::update, MatchEngine's queries, MinimalMatchSearch) opens
// a ThreadScope with the caller's num_threads; OpenMP regions and Eigen's own GEMM threads
// inherit it (a kernel that needs the count itself receives the same value as an argument).

#include <algorithm>
#include <atomic>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(_OPENMP) && defined(__unix__)
#include <pthread.h>
#endif

namespace nsm {
namespace detail {

// Set once this process has run an OpenMP team of two or more threads; a process forked
// after that inherits it (and then never starts another team).
inline std::atomic<bool>& started_threads() {
  static std::atomic<bool> flag{false};
  return flag;
}

inline std::atomic<bool>& forked_after_threads() {
  static std::atomic<bool> flag{false};
  return flag;
}

// GNU OpenMP's thread pool does not survive fork(): a child whose parent had run a team waits
// forever for the parent's pool threads at its first parallel region. The child therefore runs
// on one thread (a team of one does not touch the pool), as PyTorch's intra-op pool does.
inline void watch_forks() {
#if defined(_OPENMP) && defined(__unix__)
  static const bool registered = [] {
    pthread_atfork(nullptr, nullptr, [] {
      if (started_threads().load()) {
        forked_after_threads().store(true);
        omp_set_num_threads(1);  // regions without a num_threads clause (Eigen's) too
      }
    });
    return true;
  }();
  (void)registered;
#endif
}

}  // namespace detail

/// The threads the core uses when `requested` are asked for: at least 1, at most the
/// processors OpenMP may use (the Python layer applies the same cap), and 1 in a process
/// forked after this one's threads ran. Every OpenMP region of the core takes its count here.
inline int usable_threads(int requested) {
#ifdef _OPENMP
  detail::watch_forks();
  if (detail::forked_after_threads().load()) return 1;
  const int threads = std::clamp(requested, 1, std::max(omp_get_num_procs(), 1));
  if (threads > 1) detail::started_threads().store(true);
  return threads;
#else
  (void)requested;
  return 1;
#endif
}

// Sets the calling thread's OpenMP thread count (a per-thread setting) for one call.
class ThreadScope {
 public:
  explicit ThreadScope(int threads) {
#ifdef _OPENMP
    saved_ = omp_get_max_threads();
    omp_set_num_threads(usable_threads(threads));
#else
    (void)threads;
#endif
  }
  ~ThreadScope() {
#ifdef _OPENMP
    omp_set_num_threads(detail::forked_after_threads().load() ? 1 : saved_);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_ = 1;
};

}  // namespace nsm
