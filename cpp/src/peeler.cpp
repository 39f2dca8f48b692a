#include "nsm/peeler.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace nsm {

namespace {

// sin^2 of each live neuron against the single closest live neuron of the other layer: an
// upper bound on its squared ratio, known before any factor (O(n^2) reads of the Gram), so that
// the first factors can already put the members likely to leave at their ends.
Eigen::VectorXd nearest_other(const CosineView& c, Index n_x, const std::vector<char>& in) {
  const Index n = c.n();
  std::vector<Index> live[2];
  for (Index v = 0; v < n; ++v) {
    if (in[static_cast<std::size_t>(v)]) live[v < n_x ? 0 : 1].push_back(v);
  }
  Eigen::VectorXd out = Eigen::VectorXd::Ones(n);
#pragma omp parallel
  {
    std::vector<double> col;
#pragma omp for schedule(dynamic, 16)
    for (Index v = 0; v < n; ++v) {
      if (!in[static_cast<std::size_t>(v)]) continue;
      const std::vector<Index>& other = live[v < n_x ? 1 : 0];
      col.resize(other.size());
      c.gather_column(other.data(), static_cast<Index>(other.size()), v, col.data());
      double best = 0.0;
      for (double x : col) best = std::max(best, x * x);
      out[v] = 1.0 - std::min(best, 1.0);
    }
  }
  return out;
}

}  // namespace

Peeler::Peeler(const CosineView& cosine, Index n_x, const std::vector<char>& dead, double tol,
               Priority order, FirstOrder first_order, StopPoll* stop)
    : n_(cosine.n()),
      n_x_(n_x),
      in_(dead.size(), 0),
      spans_{SpanBasis(cosine, tol), SpanBasis(cosine, tol)},
      order_(std::move(order)),
      stop_(stop) {
  for (Index v = 0; v < n_; ++v) {
    if (!dead[static_cast<std::size_t>(v)]) {
      in_[static_cast<std::size_t>(v)] = 1;
      ++count_[side(v)];
    }
  }
  std::vector<Index> members[2];
  std::vector<Index> columns;
  collect(members, columns);
  if (order_) {
    for (int s = 0; s < 2; ++s) spans_[s].rebuild(members[s], columns, order_);
    return;
  }
  if (first_order == FirstOrder::exact) {
    // Build X's span, then Y's ordered by X's exact ratios, then X's again ordered by Y's: a
    // peeling that removes most neurons (thresholds) runs on cheap downdates from then on. The
    // first X span only orders Y's factor: its ratios need only float32's accuracy.
    spans_[0].rebuild(members[0], columns, {}, true);
    poll();
    spans_[1].rebuild(members[1], columns, leaves_soon(1));
    poll();
    spans_[0].rebuild(members[0], columns, leaves_soon(0));
    return;
  }
  // One factor per layer, ordered by a bound on the ratios (the exact ratios need the other
  // layer's factor first); rebuilds, when the cost model calls for them, order exactly.
  const Eigen::VectorXd guess = nearest_other(cosine, n_x_, in_);
  const Priority first = [&guess](Index v) { return guess[v]; };
  for (int s = 0; s < 2; ++s) {
    if (s > 0) poll();
    spans_[s].rebuild(members[s], columns, first);
  }
}

double Peeler::ratio(Index v) const { return std::sqrt(spans_[1 - side(v)].residual(v)); }

double Peeler::max_ratio() const {
  double best = 0.0;
  for (Index v = 0; v < n_; ++v) {
    if (in(v)) best = std::max(best, ratio(v));
  }
  return best;
}

void Peeler::cascade(double level, bool inclusive, std::vector<Index>& removed, Index watch) {
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
    if (!first) poll();
    remove(batch);
    removed.insert(removed.end(), batch.begin(), batch.end());
    if (watch >= 0 && !in(watch)) return;
  }
}

void Peeler::collect(std::vector<Index> (&members)[2], std::vector<Index>& columns) const {
  for (Index v = 0; v < n_; ++v) {
    if (!in(v)) continue;
    members[side(v)].push_back(v);
    columns.push_back(v);
  }
}

void Peeler::remove(const std::vector<Index>& batch) {
  std::vector<Index> gone[2];
  for (Index v : batch) {
    if (!in(v)) throw std::logic_error("Peeler::remove: neuron is not in");
    in_[static_cast<std::size_t>(v)] = 0;
    --count_[side(v)];
    gone[side(v)].push_back(v);
  }
  if (in_trial_) trial_removed_.insert(trial_removed_.end(), batch.begin(), batch.end());
  for (int s = 0; s < 2; ++s) {
    auto lists = [this, s](std::vector<Index>& members, std::vector<Index>& columns) {
      std::vector<Index> both[2];
      collect(both, columns);
      members = std::move(both[s]);
    };
    spans_[s].remove_members(gone[s], count_[0] + count_[1], lists, leaves_soon(s));
  }
}

void Peeler::refactor(Priority order) {
  if (in_trial_) throw std::logic_error("Peeler::refactor: not during a trial");
  order_ = std::move(order);
  std::vector<Index> members[2];
  std::vector<Index> columns;
  collect(members, columns);
  for (int s = 0; s < 2; ++s) spans_[s].rebuild(members[s], columns, leaves_soon(s));
}

Priority Peeler::leaves_soon(int s) const {
  if (order_) return order_;
  // A member of layer s with a larger ratio against the other layer tends to leave sooner.
  return [this, s](Index v) { return spans_[1 - s].residual(v); };
}

void Peeler::begin_trial() {
  if (in_trial_) throw std::logic_error("Peeler::begin_trial: a trial is already open");
  in_trial_ = true;
  trial_removed_.clear();
  for (SpanBasis& span : spans_) span.begin_trial();
}

void Peeler::commit_trial() {
  if (!in_trial_) throw std::logic_error("Peeler::commit_trial: no trial is open");
  in_trial_ = false;
  for (SpanBasis& span : spans_) span.end_trial(false);
  // Downdates kept by many trials accumulate rounding: refresh a factor by the usual rule.
  std::vector<Index> members[2];
  std::vector<Index> columns;
  bool collected = false;
  for (int s = 0; s < 2; ++s) {
    if (!spans_[s].needs_refresh()) continue;
    if (!collected) {
      collect(members, columns);
      collected = true;
    }
    spans_[s].rebuild(members[s], columns, leaves_soon(s));
  }
}

void Peeler::rollback_trial() {
  if (!in_trial_) throw std::logic_error("Peeler::rollback_trial: no trial is open");
  in_trial_ = false;
  for (SpanBasis& span : spans_) span.end_trial(true);
  for (Index v : trial_removed_) {
    in_[static_cast<std::size_t>(v)] = 1;
    ++count_[side(v)];
  }
  trial_removed_.clear();
}

}  // namespace nsm
