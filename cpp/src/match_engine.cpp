#include "nsm/match_engine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "nsm/peeler.hpp"
#include "thread_scope.hpp"


namespace nsm {

MatchEngine::MatchEngine(const Eigen::MatrixXd& gram, Index n_x, std::int64_t n_samples,
                         const MatchOptions& options)
    : n_(gram.rows()), n_x_(n_x), num_threads_(std::max(options.num_threads, 1)) {
  if (gram.rows() != gram.cols()) {
    throw std::invalid_argument("gram must be square, got " + std::to_string(gram.rows()) + " x " +
                                std::to_string(gram.cols()));
  }
  if (n_x < 1 || n_x >= n_) {
    throw std::invalid_argument("n_x must be in [1, " + std::to_string(n_ - 1) + "], got " +
                                std::to_string(n_x));
  }
  if (!gram.allFinite()) throw std::invalid_argument("gram contains NaN or Inf");
  if (!(options.dead_tol >= 0.0) || !std::isfinite(options.dead_tol)) {
    throw std::invalid_argument("dead_tol must be a finite number >= 0");
  }
  const double machine_eps = std::numeric_limits<double>::epsilon();
  rank_tol_ = options.rank_tol > 0.0
                  ? options.rank_tol
                  : machine_eps * static_cast<double>(std::max<std::int64_t>(n_samples, n_));

  const Eigen::VectorXd diag = gram.diagonal();
  dead_.assign(static_cast<std::size_t>(n_), 0);
  const double max_x = diag.head(n_x).maxCoeff();
  const double max_y = diag.tail(n_ - n_x).maxCoeff();
  Eigen::VectorXd scale = Eigen::VectorXd::Zero(n_);
  for (Index v = 0; v < n_; ++v) {
    const double side_max = v < n_x ? max_x : max_y;
    const bool dead = !(diag[v] > options.dead_tol * side_max) || !(diag[v] > 0.0);
    dead_[static_cast<std::size_t>(v)] = dead ? 1 : 0;
    if (!dead) scale[v] = 1.0 / std::sqrt(diag[v]);
  }
  cosine_ = scale.asDiagonal() * gram * scale.asDiagonal();
  for (Index v = 0; v < n_; ++v) {
    if (!dead_[static_cast<std::size_t>(v)]) cosine_(v, v) = 1.0;
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

std::vector<std::vector<char>> MatchEngine::max_match(const std::vector<double>& eps) const {
  for (double e : eps) {
    if (!(e >= 0.0 && e <= 1.0)) {
      throw std::invalid_argument("eps must be in [0, 1], got " + std::to_string(e));
    }
  }
  ThreadScope threads(num_threads_);
  std::vector<std::size_t> order(eps.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return eps[a] > eps[b]; });
  std::vector<std::vector<char>> masks(eps.size());
  Peeler peeler(cosine_, n_x_, dead_, rank_tol_);
  std::vector<Index> removed;
  for (std::size_t i : order) {
    peeler.cascade(eps[i], false, removed);
    std::vector<char> mask(static_cast<std::size_t>(n_), 0);
    for (Index v = 0; v < n_; ++v) mask[static_cast<std::size_t>(v)] = peeler.in(v) ? 1 : 0;
    masks[i] = std::move(mask);
  }
  return masks;
}

Eigen::VectorXd MatchEngine::thresholds() const {
  ThreadScope threads(num_threads_);
  Eigen::VectorXd t = Eigen::VectorXd::Constant(n_, std::numeric_limits<double>::infinity());
  Peeler peeler(cosine_, n_x_, dead_, rank_tol_);
  if (peeler.one_side_empty()) return t;  // no match at any epsilon
  std::vector<Index> removed;
  while (!peeler.empty()) {
    const double level = peeler.max_ratio();
    removed.clear();
    peeler.cascade(level, true, removed);
    for (Index v : removed) t[v] = level;
  }
  return t;
}

}  // namespace nsm
