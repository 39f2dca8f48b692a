#pragma once
// One peeling of two layers: which neurons are still in, and each layer's span.

#include <Eigen/Core>

#include <vector>

#include "nsm/interrupt.hpp"
#include "nsm/span_basis.hpp"

namespace nsm {

/// How the first factors are ordered when no order is given: by exact ratios against the other
/// layer (one more factorization of X, worth it when most neurons will be removed) or by a bound
/// on them (no extra factorization, for peelings that remove few neurons or almost all at once).
enum class FirstOrder { exact, bound };

/// The state of a peeling (docs/method.md, "Peeling") over the cosine matrix of two layers: neurons
/// 0..n_x-1 are X's, n_x..n-1 Y's. Neurons only ever leave. A trial (begin_trial) can be
/// undone (rollback_trial) at the cost of what it touched, or kept (commit_trial).
class Peeler {
 public:
  /// Starts with every neuron that is not dead. cosine's memory must outlive the peeler. Factors
  /// are ordered by `order` when given (see Priority), else by each neuron's ratio against the
  /// other layer (at first as `first_order` says). Only speed depends on the order. `stop`
  /// (may be null; must outlive the peeler's construction and cascades) is polled between the
  /// first factorizations and between the rounds of a cascade, which then throw Interrupted
  /// (the peeler is then partial: drop it).
  Peeler(const CosineView& cosine, Index n_x, const std::vector<char>& dead, double tol,
         Priority order = {}, FirstOrder first_order = FirstOrder::exact, StopPoll* stop = nullptr);

  /// Polls the stop given at construction, if any (throws Interrupted).
  void poll() const {
    if (stop_ != nullptr) stop_->poll();
  }

  bool in(Index v) const { return in_[static_cast<std::size_t>(v)] != 0; }
  bool one_side_empty() const { return count_[0] == 0 || count_[1] == 0; }
  bool empty() const { return count_[0] == 0 && count_[1] == 0; }
  Index n() const { return n_; }

  /// Ratio of a neuron that is in, against the other layer's current span.
  double ratio(Index v) const;

  /// The largest ratio over the neurons that are in (0 if none).
  double max_ratio() const;

  /// Removes the neurons whose ratio is > level (or >= level in the first round when
  /// `inclusive`), then keeps removing whatever exceeds level until nothing changes. If a
  /// layer empties, everything left goes too. Appends what it removed to `removed`. With
  /// watch >= 0, stops as soon as neuron `watch` is removed (the state is then partial).
  void cascade(double level, bool inclusive, std::vector<Index>& removed, Index watch = -1);

  /// Removes the given neurons (which must be in).
  void remove(const std::vector<Index>& batch);

  /// Refactors both spans from scratch, from now on ordering factors by `order`.
  void refactor(Priority order);

  /// Trials: changes after begin_trial() are undone by rollback_trial() or kept by
  /// commit_trial(). No factor is rebuilt during a trial (downdates only).
  void begin_trial();
  void commit_trial();
  void rollback_trial();

  /// Layer s's span (s = 0 for X, 1 for Y), for tests of its state.
  const SpanBasis& span(int s) const { return spans_[s]; }

 private:
  int side(Index v) const { return v < n_x_ ? 0 : 1; }
  void collect(std::vector<Index> (&members)[2], std::vector<Index>& columns) const;
  Priority leaves_soon(int s) const;

  Index n_;
  Index n_x_;
  std::vector<char> in_;
  Index count_[2] = {0, 0};
  SpanBasis spans_[2];
  Priority order_;  // empty: by ratio against the other layer
  bool in_trial_ = false;
  std::vector<Index> trial_removed_;
  StopPoll* stop_ = nullptr;
};

}  // namespace nsm
