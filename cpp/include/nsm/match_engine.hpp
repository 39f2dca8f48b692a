#pragma once
// Maximum matches and critical epsilons from a Gram matrix (docs/method.md, "Peeling").

#include <Eigen/Core>

#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "nsm/cosine_view.hpp"
#include "nsm/interrupt.hpp"

namespace nsm {

/// The level a maximum match at eps peels to: eps plus kMatchSlackUlps of its ulps. A neuron's
/// ratio is computed in whatever state the peeling has reached, and two peelings (thresholds'
/// levels, one eps's cascade) reach the level of a neuron by different removals: its ratio can
/// differ by a few ulps between them. With the slack, max_match(g, t_v) contains v and
/// max_match(g, eps_for(s)).similarity >= s (docs/method.md, "Ties at eps").
inline constexpr double kMatchSlackUlps = 64.0;
inline double match_level(double eps) {
  return eps + kMatchSlackUlps * std::numeric_limits<double>::epsilon() * eps;
}

using Index = Eigen::Index;

/// Neurons (both layers together) per engine thread. The engine runs many short OpenMP
/// regions (one per downdate sweep and per batch of removals); below about 1,024 neurons a
/// thread their fork and join cost more than a second thread gains (bench/bench_engine.py,
/// "threads": at 256 + 256 neurons two threads took 4 to 5 times one thread's time, at
/// 1,024 + 1,024 they gained 1.3 to 1.5 times). Tests lower it to reach the threaded paths
/// on small layers.
int engine_neurons_per_thread();
void set_engine_neurons_per_thread(int neurons);
/// The threads an engine over n neurons uses when `requested` are asked for:
/// clamp(n / engine_neurons_per_thread(), 1, requested).
int engine_threads(Index n, int requested);

struct MatchOptions {
  /// A neuron is dead when G_vv <= dead_tol * max G_uu over its own layer.
  double dead_tol = 1e-20;
  /// Rank cutoff on sin^2 of a neuron against its own layer's span; <= 0 picks the default
  /// eps_machine * max(n_samples, n_x + n_y) (docs/method.md, "Numerics").
  double rank_tol = 0.0;
  int num_threads = 1;
};

/// The maximum-match machinery for one pair of layers. Neurons 0..n_x-1 are layer X's and
/// n_x..n-1 layer Y's, in the order of the Gram matrix. Cost after construction does not
/// depend on the number of samples.
class MatchEngine {
 public:
  /// gram: the n x n symmetric Gram matrix (finite; throws std::invalid_argument otherwise),
  /// column-major with leading dimension ld (or row-major: it is symmetric). It is read in
  /// place, never copied: `owner` keeps its memory alive for the engine's lifetime (may be
  /// null when the caller guarantees that itself).
  MatchEngine(const double* gram, Index n, Index ld, Index n_x, std::int64_t n_samples,
              const MatchOptions& options, std::shared_ptr<const void> owner = nullptr);

  MatchEngine(const MatchEngine&) = delete;  // cosine_ points into scale_
  MatchEngine& operator=(const MatchEngine&) = delete;

  Index n() const { return n_; }
  Index n_x() const { return n_x_; }
  double rank_tol() const { return rank_tol_; }
  /// 1 for dead neurons (never in a match).
  const std::vector<char>& dead() const { return dead_; }

  /// Each neuron's ratio (sine of the angle) against the whole other layer's span; 0 for dead
  /// neurons, 1 when the other layer is all dead.
  Eigen::VectorXd ratios() const;

  /// Membership masks of the maximum match at each epsilon (any order; any values in [0, 1]).
  /// One pass: epsilons are processed from the largest down, each starting from the last.
  /// `should_stop` is asked between peeling rounds, at most every 50 ms: when it says stop,
  /// throws Interrupted (nothing is left behind; the same holds for thresholds).
  std::vector<std::vector<char>> max_match(const std::vector<double>& eps,
                                           const StopCheck& should_stop = {}) const;

  /// Each neuron's critical epsilon t_v = min{eps : v in MM(eps)}: inf for dead neurons and
  /// when one layer has no live neuron. MM(eps) = {v : t_v <= eps}.
  Eigen::VectorXd thresholds(const StopCheck& should_stop = {}) const;

  /// The cosine matrix (Gram scaled to a unit diagonal) the engine works on, read from the Gram.
  const CosineView& cosine() const { return cosine_; }
  int num_threads() const { return num_threads_; }

 private:
  Index n_;
  Index n_x_;
  double rank_tol_;
  int num_threads_;
  std::vector<char> dead_;
  std::shared_ptr<const void> owner_;  // keeps the Gram's memory alive
  Eigen::VectorXd scale_;              // 1 / sqrt(G_vv); 0 for dead neurons
  CosineView cosine_;
};

}  // namespace nsm
