#pragma once
// The span of one layer's current neurons, kept as an orthonormal basis that survives removals.

#include <Eigen/Core>

#include <cstdint>
#include <functional>
#include <vector>

#include "nsm/cosine_view.hpp"

namespace nsm {

using Index = Eigen::Index;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// How soon a neuron is expected to leave (higher: sooner), by global index. A rebuild puts
/// the members expected to stay first in the factor, so that later removals sit near its end,
/// where a Givens downdate is cheap. Only speed depends on it, never the result.
using Priority = std::function<double(Index)>;

/// Process-wide counts of what the span bases did, for tests of the engine's inner paths.
struct EngineCounters {
  std::int64_t rebuilds = 0;         // factorizations from scratch
  std::int64_t downdates = 0;        // basis members removed by Givens rotations
  std::int64_t parallel_sweeps = 0;  // of those, sweeps whose rotations threads shared by columns
  std::int64_t promotions = 0;       // dependent members that joined the basis
  std::int64_t rollbacks = 0;        // trials undone
};
EngineCounters engine_counters();
void reset_engine_counters();

/// Switches that force one of the engine's paths (tests only; results must not change, and
/// the defaults are what users get): how remove_members refactors (by its cost model, always by
/// downdates, or always by a rebuild outside trials), and whether every sweep of rotations over
/// more than 8 columns is shared among threads (by default only big ones are).
enum class Refactor { automatic, downdate, rebuild };
struct EnginePaths {
  Refactor refactor = Refactor::automatic;
  bool parallel_sweeps = false;
};
void set_engine_paths(const EnginePaths& paths);
EnginePaths engine_paths();

/// Orthonormal coordinates of tracked neurons against span{z_u : u in members}.
///
/// Works on the cosine matrix C (the Gram matrix scaled to a unit diagonal), so every
/// quantity is scale-free: residual(v) is sin^2 of the angle between z_v and the span.
/// The basis is a pivoted Cholesky factor of C[members, members]; a member whose squared
/// sine against the basis is at most rank_tol adds nothing to the span (it is "dependent").
///
/// W (k x columns, row-major) holds R^{-T} C[basis, t] for every tracked neuron t; the basis
/// members' own columns form the triangular factor R. Removing a basis member deletes a column
/// of R and restores the triangle with Givens rotations on the rows of W; the row that falls
/// off gives each neuron's exact increase in squared residual. A dependent member that then
/// exceeds rank_tol joins the basis (one new row, a matrix-vector product).
///
/// Refactorization rule: remove_members() rebuilds from C instead of downdating when the
/// rotations since the last rebuild, this removal's included, would cost more than a rebuild
/// (cost model in span_basis.cpp; rent or buy), and always after max(64, k/2) basis removals
/// since the last rebuild, to bound accumulated rounding.
class SpanBasis {
 public:
  /// cosine must outlive the basis (it is copied, but it views memory it does not own).
  SpanBasis(const CosineView& cosine, double rank_tol);

  /// Factorizes span{members} from scratch and tracks the neurons in `columns` (which must
  /// include the members, and in which the non-members form one run). Cost O(m^3 + k^2
  /// |columns|), BLAS-3.
  /// With `to_order`, the rebuild only serves to order another factor: the non-members'
  /// coordinates are solved in float32 when the factor is well enough conditioned for it
  /// (residuals then good to about 1e-4; the factor itself, the rank and zero_tol() are exact),
  /// and the basis cannot remove members before the next rebuild.
  void rebuild(const std::vector<Index>& members, const std::vector<Index>& columns,
               const Priority& leaves_soon = {}, bool to_order = false);

  /// Fills the members and the tracked neurons that are left (asked only for a rebuild).
  using Lists = std::function<void(std::vector<Index>& members, std::vector<Index>& columns)>;

  /// Removes `gone` (a subset of the current members) from the span. `columns_after` counts the
  /// tracked neurons left; `lists_after` gives them if the cost model chooses a rebuild.
  void remove_members(const std::vector<Index>& gone, Index columns_after, const Lists& lists_after,
                      const Priority& leaves_soon = {});

  /// sin^2 of the angle between neuron v (global index, tracked) and the span, in [0, 1];
  /// exactly 0 when it is at most zero_tol() (v counts as lying in the span).
  double residual(Index v) const;

  /// The largest sin^2 that counts as 0 (docs/method.md, "The zero tolerance"): see
  /// zero_tolerance(). A residual computed from a Gram carries rounding of about eps_machine *
  /// cond(C[basis, basis]), well above rank_tol for ill-conditioned spans; fixed at the first
  /// rebuild (all live neurons, the same start for every search), so the rule does not depend
  /// on later removals, nor on the first factor's pivot order.
  double zero_tol() const { return zero_tol_; }

  /// Dimension of the span (number of basis members).
  Index rank() const { return static_cast<Index>(basis_.size()); }

  /// A trial: later changes can be undone by end_trial(true), restoring only the rows of W
  /// that downdates touched; end_trial(false) keeps them. No rebuild happens during a trial.
  void begin_trial();
  void end_trial(bool rollback);

  /// True when kept downdates have reached the refresh rule's limit (see the class comment).
  bool needs_refresh() const;

  /// The live state, for tests: the basis members in factor order, W's live rows (rank x
  /// tracked, columns in the order of `tracked()`), the residual of each tracked neuron.
  const std::vector<Index>& basis() const { return basis_; }
  const std::vector<Index>& tracked() const { return columns_; }
  RowMatrix coordinates() const { return w_.topRows(rank()); }
  const Eigen::VectorXd& residuals() const { return res_; }

 private:
  // The phases of rebuild(), in order. In all of them m = |members_|, k = the rank, and l is
  // C[members_, members_] (m x m, column-major) once factorized: its lower trapezoid's first k
  // columns hold L in pivoted order (L_BB = l.topLeftCorner(k, k), so that C_BB = L_BB L_BB^T).
  /// Forgets the lists of the last rebuild (W's columns, the member and basis flags) and takes
  /// `members` and `columns` as the new ones (global ids; the members are tracked columns).
  void track(const std::vector<Index>& members, const std::vector<Index>& columns);
  /// C[members_, members_] (m x m, column-major, unitless cosines): the lower triangle with a
  /// unit diagonal only, all that the factorization reads; the strict upper triangle is unset.
  Eigen::MatrixXd gather_members() const;
  /// Factorizes a = C[members_, members_] from gather_members() in place into l (pivoted
  /// Cholesky down to rank_tol, pivots ordered by leaves_soon when given; perm[i] is pivot i's
  /// position in members_) and fixes zero_tol_ at the first rebuild. Returns the rank k.
  Index factorize(Eigen::MatrixXd& a, std::vector<Index>& perm, const Priority& leaves_soon);
  /// Makes the first k pivots the basis, in factor order (basis_ and its flags, cleared by
  /// track()). Returns W's column of each pivot, m entries; throws if a member is untracked.
  std::vector<Index> set_basis(const std::vector<Index>& perm, Index k);
  /// Sizes W to max(m, 1) x |columns_| (room for every member to join the basis) and writes
  /// its first k rows at the members' columns: the rows of l, W(r, member_col[i]) = l(i, r).
  void write_member_rows(const Eigen::MatrixXd& l, const std::vector<Index>& member_col, Index k);
  /// W[:k, others] = L_BB^{-1} C[basis_, others] for the tracked non-members (one run of W's
  /// columns), solved in place in W; in float32 when to_order and every l(i, i)^2 >= kFloat32Pivot.
  void solve_others(const Eigen::MatrixXd& l, Index k, bool to_order);
  /// res_ = 1 - the squared norm of each column of W[:k, :] (sin^2 against the span, length
  /// |columns_|), exactly 0 at the basis members.
  void set_residuals(Index k);

  void downdate_at(Index position);
  void promote_dependents();
  void append_basis(Index v);
  void save_rows_from(Index row);
  Index drift_limit() const;

  CosineView c_;
  double tol_;
  double zero_tol_ = -1.0;       // set by the first rebuild
  bool to_order_ = false;        // the last rebuild was one with to_order
  std::vector<Index> members_;   // current members (global ids)
  std::vector<Index> basis_;     // basis members in factor order (global ids)
  std::vector<Index> columns_;   // tracked neurons at the last rebuild (global ids)
  std::vector<Index> local_;     // global id -> column of W, or -1
  std::vector<char> is_member_;  // by global id
  std::vector<char> is_basis_;   // by global id
  RowMatrix w_;                  // capacity rows x columns; the first rank() rows are live
  Eigen::VectorXd res_;          // per column of W
  Index removed_since_rebuild_ = 0;
  double rotations_since_rebuild_ = 0.0;  // cost-model units spent on downdates since then
  // Trial journal: W's rows [saved_from_, trial_rank_) as they were, and the small state.
  bool in_trial_ = false;
  Index trial_rank_ = 0;
  Index saved_from_ = 0;
  RowMatrix saved_rows_;
  Eigen::VectorXd saved_res_;
  std::vector<Index> saved_basis_;
  std::vector<Index> saved_members_;
  Index saved_removed_ = 0;
  Index rank_at_rebuild_ = 0;
};

/// The zero tolerance of a layer whose first factor has rank k and lower-triangular factor
/// l.topLeftCorner(k, k) of C[basis, basis] (rows in any order): rank_tol * max_v
/// [C[basis, basis]^-1]_vv, clamped to [rank_tol, sqrt(rank_tol)]. The inverse's diagonal does
/// not depend on the order of the basis (it is each member's 1 / sin^2 against the others), and
/// it bounds 1 / pivot^2 of a Cholesky in every order: the smallest pivot any order could give.
double zero_tolerance(const Eigen::MatrixXd& l, Index k, double rank_tol);

/// Rank-revealing Cholesky with diagonal pivoting (blocked, like LAPACK's dpstrf) of the
/// symmetric positive semi-definite matrix a (overwritten: its lower trapezoid's first
/// `rank` columns hold L in pivoted order). Stops when no remaining Schur diagonal exceeds
/// tol. perm[i] is the original row of pivoted row i. Returns the rank.
/// With `leaves_soon` (one value per row), each pivot is the row that leaves latest among
/// those whose Schur diagonal is at least 5% of the largest (threshold pivoting: the factor's
/// entries stay below 1/sqrt(0.05) < 4.5 in size); without it, the largest diagonal.
Index pivoted_cholesky(Eigen::MatrixXd& a, double tol, std::vector<Index>& perm,
                       const Eigen::VectorXd* leaves_soon = nullptr);

}  // namespace nsm
