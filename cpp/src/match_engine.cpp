#include "nsm/match_engine.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "nsm/peeler.hpp"
#include "thread_scope.hpp"

namespace nsm {

namespace { std::atomic<int> g_neurons_per_thread{1024}; }  // namespace

int engine_neurons_per_thread() { return g_neurons_per_thread.load(); }

void set_engine_neurons_per_thread(int neurons) {
  if (neurons < 1) {
    throw std::invalid_argument("neurons per thread must be >= 1, got " + std::to_string(neurons));
  }
  g_neurons_per_thread.store(neurons);
}

int engine_threads(Index n, int requested) {
  const Index by_size = n / engine_neurons_per_thread();
  return static_cast<int>(std::clamp<Index>(by_size, 1, std::max(requested, 1)));
}

MatchEngine::MatchEngine(const double* gram, Index n, Index ld, Index n_x, std::int64_t n_samples,
                         const MatchOptions& options, std::shared_ptr<const void> owner)
    : n_(n),
      n_x_(n_x),
      num_threads_(engine_threads(n, options.num_threads)),
      owner_(std::move(owner)),
      scale_(Eigen::VectorXd::Zero(n)),
      cosine_(gram, n, ld, scale_.data()) {
  if (n < 2 || ld < n) {
    throw std::invalid_argument("gram must be square with at least 2 rows, got " + std::to_string(n) +
                                " rows and leading dimension " + std::to_string(ld));
  }
  if (n_x < 1 || n_x >= n_) {
    throw std::invalid_argument("n_x must be in [1, " + std::to_string(n_ - 1) + "], got " +
                                std::to_string(n_x));
  }
  bool finite = true;
  {
    ThreadScope threads(num_threads_);
#pragma omp parallel for schedule(static) reduction(&& : finite)
    for (Index j = 0; j < n; ++j) {
      const Eigen::Map<const Eigen::VectorXd> col(gram + j * ld, n);
      finite = finite && col.allFinite();
    }
  }
  if (!finite) throw std::invalid_argument("gram contains NaN or Inf");
  if (!(options.dead_tol >= 0.0) || !std::isfinite(options.dead_tol)) {
    throw std::invalid_argument("dead_tol must be a finite number >= 0");
  }
  const double machine_eps = std::numeric_limits<double>::epsilon();
  rank_tol_ = options.rank_tol > 0.0
                  ? options.rank_tol
                  : machine_eps * static_cast<double>(std::max<std::int64_t>(n_samples, n_));

  Eigen::VectorXd diag(n_);
  for (Index v = 0; v < n_; ++v) diag[v] = gram[v + v * ld];
  dead_.assign(static_cast<std::size_t>(n_), 0);
  const double max_x = diag.head(n_x).maxCoeff();
  const double max_y = diag.tail(n_ - n_x).maxCoeff();
  for (Index v = 0; v < n_; ++v) {
    const double side_max = v < n_x ? max_x : max_y;
    const bool dead = !(diag[v] > options.dead_tol * side_max) || !(diag[v] > 0.0);
    dead_[static_cast<std::size_t>(v)] = dead ? 1 : 0;
    if (!dead) scale_[v] = 1.0 / std::sqrt(diag[v]);
  }
}

Eigen::VectorXd MatchEngine::ratios() const {
  ThreadScope threads(num_threads_);
  // Nothing is removed here, so the factors' order does not matter: one build per layer.
  const Peeler peeler(cosine_, n_x_, dead_, rank_tol_, [](Index) { return 0.0; });
  Eigen::VectorXd out = Eigen::VectorXd::Zero(n_);
  for (Index v = 0; v < n_; ++v) {
    if (peeler.in(v)) out[v] = peeler.ratio(v);
  }
  return out;
}

std::vector<std::vector<char>> MatchEngine::max_match(const std::vector<double>& eps,
                                                      const StopCheck& should_stop) const {
  for (double e : eps) {
    if (!(e >= 0.0 && e <= 1.0)) {
      throw std::invalid_argument("eps must be in [0, 1], got " + std::to_string(e));
    }
  }
  ThreadScope threads(num_threads_);
  StopPoll stop(should_stop);
  std::vector<std::size_t> order(eps.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return eps[a] > eps[b]; });
  std::vector<std::vector<char>> masks(eps.size());
  // One epsilon removes few neurons (downdates) or nearly all (small rebuilds): the first
  // factors need no ordering pass. Several epsilons peel on like thresholds do.
  Peeler peeler(cosine_, n_x_, dead_, rank_tol_, {},
                eps.size() > 1 ? FirstOrder::exact : FirstOrder::bound, &stop);
  std::vector<Index> removed;
  for (std::size_t i : order) {
    stop.poll();
    peeler.cascade(match_level(eps[i]), false, removed);
    std::vector<char> mask(static_cast<std::size_t>(n_), 0);
    for (Index v = 0; v < n_; ++v) mask[static_cast<std::size_t>(v)] = peeler.in(v) ? 1 : 0;
    masks[i] = std::move(mask);
  }
  return masks;
}

Eigen::VectorXd MatchEngine::thresholds(const StopCheck& should_stop) const {
  ThreadScope threads(num_threads_);
  StopPoll stop(should_stop);
  Eigen::VectorXd t = Eigen::VectorXd::Constant(n_, std::numeric_limits<double>::infinity());
  Peeler peeler(cosine_, n_x_, dead_, rank_tol_, {}, FirstOrder::exact, &stop);
  if (peeler.one_side_empty()) return t;  // no match at any epsilon
  std::vector<Index> removed;
  while (!peeler.empty()) {
    stop.poll();
    const double level = peeler.max_ratio();
    removed.clear();
    peeler.cascade(level, true, removed);
    for (Index v : removed) t[v] = level;
  }
  return t;
}

}  // namespace nsm
