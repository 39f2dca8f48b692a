#pragma once
// v-minimal matches by trial removals with a cheap rollback (docs/method.md, "Trial removals").

#include <Eigen/Core>

#include <vector>

#include "nsm/interrupt.hpp"
#include "nsm/match_engine.hpp"
#include "nsm/peeler.hpp"

namespace nsm {

/// Searches for v-minimal matches at one epsilon, each starting from the maximum match, which
/// is computed once. The engine must outlive the search.
class MinimalMatchSearch {
 public:
  /// `order` is the trial order most searches will use (for example X's neurons by index,
  /// then Y's): the factors are ordered so that neurons tried first sit last, where removing
  /// them is cheapest. Another order in find() costs one refactorization.
  MinimalMatchSearch(const MatchEngine& engine, double eps, const std::vector<Index>& order);

  /// Membership mask of the maximum match at eps.
  std::vector<char> maximum_match() const;

  /// A v-minimal match containing neuron v: starting from the maximum match, try each neuron
  /// of `order` once (neurons already gone, and v, are skipped): remove it and cascade at
  /// eps; keep the removal if v survives, otherwise undo it (restoring only what the trial
  /// touched). This is the authors' procedure, whose kept set always equals the maximum match
  /// of what is left. Returns the membership mask, or an empty vector when v is not in the
  /// maximum match. should_stop is called about every 50 ms; if it returns true the search
  /// throws Interrupted.
  std::vector<char> find(Index v, const std::vector<Index>& order,
                         const StopCheck& should_stop = {}) const;

 private:
  const MatchEngine& engine_;
  double eps_;
  std::vector<Index> order_;
  Peeler maximum_;
};

}  // namespace nsm
