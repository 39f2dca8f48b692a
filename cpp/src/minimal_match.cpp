#include "nsm/minimal_match.hpp"

#include <memory>
#include <stdexcept>
#include <string>

#include "thread_scope.hpp"

namespace nsm {
namespace {

void check_order(const std::vector<Index>& order, Index n) {
  for (Index u : order) {
    if (u < 0 || u >= n) {
      throw std::out_of_range("order holds neuron " + std::to_string(u) + ", out of range [0, " +
                              std::to_string(n) + ")");
    }
  }
}

// Neurons tried sooner "leave sooner": they go last in the factors.
Priority tried_soon(const std::vector<Index>& order, Index n) {
  auto rank = std::make_shared<std::vector<double>>(static_cast<std::size_t>(n), 0.0);
  const auto count = static_cast<double>(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    (*rank)[static_cast<std::size_t>(order[i])] = count - static_cast<double>(i);
  }
  return [rank](Index v) { return (*rank)[static_cast<std::size_t>(v)]; };
}

Peeler maximum_match_state(const MatchEngine& engine, double eps, const std::vector<Index>& order) {
  if (!(eps >= 0.0 && eps <= 1.0)) {
    throw std::invalid_argument("eps must be in [0, 1], got " + std::to_string(eps));
  }
  check_order(order, engine.n());
  ThreadScope threads(engine.num_threads());
  Peeler peeler(engine.cosine(), engine.n_x(), engine.dead(), engine.rank_tol(),
                tried_soon(order, engine.n()));
  std::vector<Index> removed;
  peeler.cascade(eps, false, removed);
  return peeler;
}

}  // namespace

MinimalMatchSearch::MinimalMatchSearch(const MatchEngine& engine, double eps,
                                       const std::vector<Index>& order)
    : engine_(engine), eps_(eps), order_(order), maximum_(maximum_match_state(engine, eps, order)) {}

std::vector<char> MinimalMatchSearch::maximum_match() const {
  std::vector<char> mask(static_cast<std::size_t>(maximum_.n()));
  for (Index v = 0; v < maximum_.n(); ++v) mask[static_cast<std::size_t>(v)] = maximum_.in(v) ? 1 : 0;
  return mask;
}

std::vector<char> MinimalMatchSearch::find(Index v, const std::vector<Index>& order,
                                           const StopCheck& should_stop) const {
  const Index n = maximum_.n();
  if (v < 0 || v >= n) {
    throw std::out_of_range("neuron " + std::to_string(v) + " is out of range [0, " + std::to_string(n) +
                            ")");
  }
  check_order(order, n);
  if (!maximum_.in(v)) return {};
  ThreadScope threads(engine_.num_threads());
  StopPoll stop(should_stop);
  Peeler peeler = maximum_;
  if (order != order_) peeler.refactor(tried_soon(order, n));
  std::vector<Index> removed;
  for (Index u : order) {
    if (u == v || !peeler.in(u)) continue;
    stop.poll();
    peeler.begin_trial();
    peeler.remove({u});
    removed.clear();
    if (peeler.in(v)) peeler.cascade(eps_, false, removed, v);
    if (peeler.in(v)) {
      peeler.commit_trial();
    } else {
      peeler.rollback_trial();
    }
  }
  std::vector<char> mask(static_cast<std::size_t>(n));
  for (Index u = 0; u < n; ++u) mask[static_cast<std::size_t>(u)] = peeler.in(u) ? 1 : 0;
  return mask;
}

}  // namespace nsm
