#include "nsm/match_engine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "nsm/span_basis.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nsm {
namespace {

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

// The state of one peeling: which neurons are still in, and each layer's span.
class Peeler {
 public:
  Peeler(const Eigen::MatrixXd& cosine, Index n_x, const std::vector<char>& dead, double tol)
      : n_(cosine.rows()), n_x_(n_x), in_(dead.size(), 0), spans_{SpanBasis(cosine, tol),
                                                                  SpanBasis(cosine, tol)} {
    for (Index v = 0; v < n_; ++v) {
      if (!dead[static_cast<std::size_t>(v)]) {
        in_[static_cast<std::size_t>(v)] = 1;
        ++count_[side(v)];
      }
    }
    std::vector<Index> members[2];
    std::vector<Index> columns;
    collect(members, columns);
    // Build X's span, then Y's with X's ratios as its order, then X's again with Y's.
    spans_[0].rebuild(members[0], columns);
    spans_[1].rebuild(members[1], columns, leaves_soon(1));
    spans_[0].rebuild(members[0], columns, leaves_soon(0));
  }

  bool in(Index v) const { return in_[static_cast<std::size_t>(v)] != 0; }
  bool one_side_empty() const { return count_[0] == 0 || count_[1] == 0; }
  bool empty() const { return count_[0] == 0 && count_[1] == 0; }

  /// Ratio of a neuron that is in, against the other layer's current span.
  double ratio(Index v) const { return std::sqrt(spans_[1 - side(v)].residual(v)); }

  double max_ratio() const {
    double best = 0.0;
    for (Index v = 0; v < n_; ++v) {
      if (in(v)) best = std::max(best, ratio(v));
    }
    return best;
  }

  /// Removes the neurons that are in and whose ratio is > level (or >= level when
  /// `inclusive`), then keeps removing whatever exceeds level until nothing changes. If a
  /// layer empties, everything left goes too. Appends what it removed to `removed`.
  void cascade(double level, bool inclusive, std::vector<Index>& removed) {
    std::vector<Index> batch;
    for (bool first = true;; first = false) {
      batch.clear();
      if (one_side_empty()) {
        for (Index v = 0; v < n_; ++v) {
          if (in(v)) batch.push_back(v);
        }
      } else {
        for (Index v = 0; v < n_; ++v) {
          if (!in(v)) continue;
          const double r = ratio(v);
          if (r > level || (first && inclusive && r >= level)) batch.push_back(v);
        }
      }
      if (batch.empty()) return;
      remove(batch);
      removed.insert(removed.end(), batch.begin(), batch.end());
    }
  }

 private:
  int side(Index v) const { return v < n_x_ ? 0 : 1; }

  void collect(std::vector<Index> (&members)[2], std::vector<Index>& columns) const {
    for (Index v = 0; v < n_; ++v) {
      if (!in(v)) continue;
      members[side(v)].push_back(v);
      columns.push_back(v);
    }
  }

  void remove(const std::vector<Index>& batch) {
    std::vector<Index> gone[2];
    for (Index v : batch) {
      in_[static_cast<std::size_t>(v)] = 0;
      --count_[side(v)];
      gone[side(v)].push_back(v);
    }
    std::vector<Index> members[2];
    std::vector<Index> columns;
    collect(members, columns);
    for (int s = 0; s < 2; ++s) spans_[s].remove_members(gone[s], members[s], columns, leaves_soon(s));
  }

  // A member of layer s with a larger ratio against the other layer tends to leave sooner.
  Priority leaves_soon(int s) const {
    return [this, s](Index v) { return spans_[1 - s].residual(v); };
  }

  Index n_;
  Index n_x_;
  std::vector<char> in_;
  Index count_[2] = {0, 0};
  SpanBasis spans_[2];
};

}  // namespace

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
  const Peeler peeler(cosine_, n_x_, dead_, rank_tol_);
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
