#include "nsm/span_basis.hpp"

#include "nsm/dense.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <utility>

namespace nsm {
namespace {

constexpr Index kColumnChunk = 512;  // columns per thread task when applying rotations
// A BLAS-3 flop (rebuild) is about this many times cheaper than a rotation flop (downdate).
constexpr double kBlas3Advantage = 6.0;
constexpr double kThresholdPivot = 0.05;  // see pivoted_cholesky's leaves_soon
// A rebuild `to_order` solves in float32 when no squared pivot is below this (see rebuild).
constexpr double kFloat32Pivot = 1e-6;
using RowMatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Counters and switches of the engine's paths (see span_basis.hpp).
struct AtomicCounters {
  std::atomic<std::int64_t> rebuilds{0};
  std::atomic<std::int64_t> downdates{0};
  std::atomic<std::int64_t> parallel_sweeps{0};
  std::atomic<std::int64_t> promotions{0};
  std::atomic<std::int64_t> rollbacks{0};
};
AtomicCounters g_counters;
std::atomic<int> g_refactor{0};
std::atomic<bool> g_parallel_sweeps{false};

void bump(std::atomic<std::int64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

EngineCounters engine_counters() {
  EngineCounters c;
  c.rebuilds = g_counters.rebuilds.load();
  c.downdates = g_counters.downdates.load();
  c.parallel_sweeps = g_counters.parallel_sweeps.load();
  c.promotions = g_counters.promotions.load();
  c.rollbacks = g_counters.rollbacks.load();
  return c;
}

void reset_engine_counters() {
  g_counters.rebuilds = 0;
  g_counters.downdates = 0;
  g_counters.parallel_sweeps = 0;
  g_counters.promotions = 0;
  g_counters.rollbacks = 0;
}

void set_engine_paths(const EnginePaths& paths) {
  g_refactor = static_cast<int>(paths.refactor);
  g_parallel_sweeps = paths.parallel_sweeps;
}

EnginePaths engine_paths() {
  EnginePaths p;
  p.refactor = static_cast<Refactor>(g_refactor.load());
  p.parallel_sweeps = g_parallel_sweeps.load();
  return p;
}

Index pivoted_cholesky(Eigen::MatrixXd& a, double tol, std::vector<Index>& perm,
                       const Eigen::VectorXd* leaves_soon) {
  const Index m = a.rows();
  if (leaves_soon != nullptr && leaves_soon->size() != m) {
    throw std::invalid_argument("pivoted_cholesky: leaves_soon needs one value per row");
  }
  perm.resize(static_cast<std::size_t>(m));
  return pivoted_cholesky_lower(a.data(), a.outerStride(), m, tol,
                                leaves_soon != nullptr ? leaves_soon->data() : nullptr, kThresholdPivot,
                                perm.data());
}

double zero_tolerance(const Eigen::MatrixXd& l, Index k, double rank_tol) {
  const double widest = std::sqrt(rank_tol);
  // Every pivot of every order satisfies 1 / pivot^2 <= max_v [C_BB^-1]_vv, so a factor whose
  // own smallest pivot already reaches the clamp needs no inverse.
  double smallest_pivot = 1.0;
  for (Index i = 0; i < k; ++i) smallest_pivot = std::min(smallest_pivot, l(i, i) * l(i, i));
  if (k == 0 || rank_tol / smallest_pivot >= widest) return k == 0 ? rank_tol : widest;
  // max_v [C_BB^-1]_vv = the largest squared column norm of L^-1 (C_BB = L L^T): column block
  // [j0, j0 + b) of L^-1 is zero above row j0, so each block solves with L[j0:, j0:] only
  // (k^3 / 3 flops in all).
  constexpr Index kBlock = 256;
  double widest_column = 1.0;
  RowMatrix x;
  for (Index j0 = 0; j0 < k; j0 += kBlock) {
    const Index b = std::min(kBlock, k - j0);
    const Index rows = k - j0;
    x.setZero(rows, b);
    for (Index j = 0; j < b; ++j) x(j, j) = 1.0;
    solve_lower(l.data() + j0 + j0 * l.outerStride(), l.outerStride(), rows, x.data(), b, b);
    const Eigen::RowVectorXd norms = x.colwise().squaredNorm();
    widest_column = std::max(widest_column, norms.maxCoeff());
  }
  return std::max(std::min(rank_tol * widest_column, widest), rank_tol);
}

SpanBasis::SpanBasis(const CosineView& cosine, double rank_tol) : c_(cosine), tol_(rank_tol) {
  const auto n = static_cast<std::size_t>(cosine.n());
  local_.assign(n, -1);
  is_member_.assign(n, 0);
  is_basis_.assign(n, 0);
}

void SpanBasis::rebuild(const std::vector<Index>& members, const std::vector<Index>& columns,
                        const Priority& leaves_soon, bool to_order) {
  if (in_trial_) throw std::logic_error("SpanBasis::rebuild: not during a trial");
  bump(g_counters.rebuilds);
  track(members, columns);
  Eigen::MatrixXd a = gather_members();
  std::vector<Index> perm;
  const Index k = factorize(a, perm, leaves_soon);
  const std::vector<Index> member_col = set_basis(perm, k);
  write_member_rows(a, member_col, k);
  solve_others(a, k, to_order);
  set_residuals(k);
  to_order_ = to_order;
  removed_since_rebuild_ = 0;
  rotations_since_rebuild_ = 0.0;
  rank_at_rebuild_ = k;
}

void SpanBasis::track(const std::vector<Index>& members, const std::vector<Index>& columns) {
  for (Index v : columns_) local_[static_cast<std::size_t>(v)] = -1;
  for (Index v : members_) is_member_[static_cast<std::size_t>(v)] = 0;
  for (Index v : basis_) is_basis_[static_cast<std::size_t>(v)] = 0;
  members_ = members;
  columns_ = columns;
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    local_[static_cast<std::size_t>(columns_[i])] = static_cast<Index>(i);
  }
  for (Index v : members_) is_member_[static_cast<std::size_t>(v)] = 1;
}

Eigen::MatrixXd SpanBasis::gather_members() const {
  const auto m = static_cast<Index>(members_.size());
  // Members in a run of neurons (a whole layer before any removal) are read as a run.
  const bool members_run = m > 0 && members_.back() - members_.front() + 1 == m;
  Eigen::MatrixXd a(m, m);
  for (Index j = 0; j < m; ++j) {
    const Index v = members_[static_cast<std::size_t>(j)];
    if (members_run) {
      c_.gather_run(v, m - j, v, &a(j, j));
    } else {
      c_.gather_column(members_.data() + j, m - j, v, &a(j, j));
    }
    a(j, j) = 1.0;
  }
  return a;
}

Index SpanBasis::factorize(Eigen::MatrixXd& a, std::vector<Index>& perm, const Priority& leaves_soon) {
  const auto m = static_cast<Index>(members_.size());
  Eigen::VectorXd soon;
  if (leaves_soon) {
    soon.resize(m);
    for (Index i = 0; i < m; ++i) soon[i] = leaves_soon(members_[static_cast<std::size_t>(i)]);
  }
  const Index k = pivoted_cholesky(a, tol_, perm, leaves_soon ? &soon : nullptr);
  if (zero_tol_ < 0.0) zero_tol_ = zero_tolerance(a, k, tol_);
  return k;
}

std::vector<Index> SpanBasis::set_basis(const std::vector<Index>& perm, Index k) {
  const auto m = static_cast<Index>(members_.size());
  basis_.clear();
  std::vector<Index> member_col(static_cast<std::size_t>(m));
  for (Index i = 0; i < m; ++i) {
    const Index v = members_[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])];
    if (i < k) {
      basis_.push_back(v);
      is_basis_[static_cast<std::size_t>(v)] = 1;
    }
    member_col[static_cast<std::size_t>(i)] = local_[static_cast<std::size_t>(v)];
    if (member_col[static_cast<std::size_t>(i)] < 0) {
      throw std::logic_error("SpanBasis::rebuild: a member is not a tracked column");
    }
  }
  return member_col;
}

void SpanBasis::write_member_rows(const Eigen::MatrixXd& l, const std::vector<Index>& member_col,
                                  Index k) {
  const auto m = static_cast<Index>(members_.size());
  const auto ncols = static_cast<Index>(columns_.size());
  // Room for every member to join the basis later (promotions never reallocate); rows at and
  // past the rank are written before they are read (append_basis).
  const Index capacity = std::max<Index>(m, 1);
  if (w_.rows() != capacity || w_.cols() != ncols) w_.resize(capacity, ncols);
  w_.topRows(k).setZero();
  // Members: their coordinates are the rows of L (in pivoted order), written row by row of W.
  for (Index r = 0; r < k; ++r) {
    double* row = w_.row(r).data();
    for (Index i = r; i < m; ++i) row[member_col[static_cast<std::size_t>(i)]] = l(i, r);
  }
}

void SpanBasis::solve_others(const Eigen::MatrixXd& l, Index k, bool to_order) {
  // A Peeler tracks every neuron in index order, so one layer's others are a run of columns.
  std::vector<Index> others;
  for (Index v : columns_) {
    if (!is_member_[static_cast<std::size_t>(v)]) others.push_back(v);
  }
  const auto no = static_cast<Index>(others.size());
  if (k == 0 || no == 0) return;
  const Index first = local_[static_cast<std::size_t>(others.front())];
  if (local_[static_cast<std::size_t>(others.back())] != first + no - 1) {
    throw std::logic_error("SpanBasis::rebuild: the non-members must be a run of the tracked neurons");
  }
  double* rhs = &w_(0, first);
  const Index ld = w_.cols();
  const bool others_run = others.back() - others.front() + 1 == no;
#pragma omp parallel for schedule(static)
  for (Index r = 0; r < k; ++r) {
    // Column basis_r of the symmetric C holds row basis_r's entries: a contiguous read.
    const Index v = basis_[static_cast<std::size_t>(r)];
    if (others_run) {
      c_.gather_run(others.front(), no, v, rhs + r * ld);
    } else {
      c_.gather_column(others.data(), no, v, rhs + r * ld);
    }
  }
  double smallest_pivot = 1.0;
  for (Index i = 0; i < k; ++i) smallest_pivot = std::min(smallest_pivot, l(i, i) * l(i, i));
  if (to_order && smallest_pivot >= kFloat32Pivot) {
    // Float32 rounding (6e-8) grows by about 1 / sqrt(smallest pivot) <= 1e3 in the solve.
    Eigen::MatrixXf lf(k, k);
    lf.triangularView<Eigen::Lower>() = l.topLeftCorner(k, k).cast<float>();
    Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> others_w(rhs, k, no, Eigen::OuterStride<>(ld));
    RowMatrixF bf = others_w.cast<float>();
    solve_lower_f32(lf.data(), lf.outerStride(), k, bf.data(), no, no);
    others_w = bf.cast<double>();
  } else {
    solve_lower(l.data(), l.outerStride(), k, rhs, ld, no);
  }
}

void SpanBasis::set_residuals(Index k) {
  res_.setOnes(static_cast<Index>(columns_.size()));
  for (Index r = 0; r < k; ++r) res_ -= w_.row(r).transpose().cwiseAbs2();
  for (Index v : basis_) res_[local_[static_cast<std::size_t>(v)]] = 0.0;
}

double SpanBasis::residual(Index v) const {
  const Index col = local_[static_cast<std::size_t>(v)];
  if (col < 0) throw std::logic_error("SpanBasis::residual: neuron is not tracked");
  // Within the rounding of a Gram-based residual (see zero_tol()) a neuron counts as inside
  // the span, so that exact matches survive rounding at eps = 0 on every search path.
  const double r = res_[col];
  return r <= zero_tol_ ? 0.0 : std::min(r, 1.0);
}

void SpanBasis::remove_members(const std::vector<Index>& gone, Index columns_after,
                               const Lists& lists_after, const Priority& leaves_soon) {
  if (gone.empty()) return;
  if (to_order_)
    throw std::logic_error("SpanBasis::remove_members: a basis built to order must be rebuilt");
  std::vector<Index> positions;
  for (Index v : gone) {
    if (!is_member_[static_cast<std::size_t>(v)]) {
      throw std::logic_error("SpanBasis::remove_members: not a member");
    }
    if (is_basis_[static_cast<std::size_t>(v)]) {
      const auto it = std::find(basis_.begin(), basis_.end(), v);
      positions.push_back(static_cast<Index>(it - basis_.begin()));
    }
  }
  // Cost model: a downdate at position p applies (k - 1 - p) rotations to every column; a
  // rebuild is a pivoted Cholesky of the members plus a triangular solve for the others.
  std::sort(positions.begin(), positions.end(), std::greater<>());
  double rotations = 0.0;
  Index k = rank();
  for (Index p : positions) rotations += static_cast<double>(--k - p);
  const auto ncols = static_cast<double>(columns_.size());
  const auto m_after = static_cast<double>(members_.size() - gone.size());
  const auto cols_after = static_cast<double>(columns_after);
  const double downdate_cost = 6.0 * rotations * ncols;
  const double rebuild_cost =
      (2.0 / 3.0 * m_after * m_after * m_after + m_after * m_after * cols_after) / kBlas3Advantage;
  const auto removals = static_cast<Index>(positions.size());
  const auto forced = static_cast<Refactor>(g_refactor.load(std::memory_order_relaxed));
  // Rent or buy: rebuild once the rotations since the last rebuild, this batch's included, would
  // cost more than a rebuild (at most twice the cheaper of the two, whatever comes next; a factor
  // ordered badly for this peeling is replaced by one ordered by the current ratios).
  const bool by_model = rotations_since_rebuild_ + downdate_cost > rebuild_cost ||
                        removed_since_rebuild_ + removals > drift_limit();
  if (!in_trial_ && forced != Refactor::downdate && (forced == Refactor::rebuild || by_model)) {
    std::vector<Index> members;
    std::vector<Index> columns;
    lists_after(members, columns);
    rebuild(members, columns, leaves_soon);
    return;
  }
  for (Index v : gone) is_member_[static_cast<std::size_t>(v)] = 0;
  members_.erase(std::remove_if(members_.begin(), members_.end(),
                                [this](Index v) { return !is_member_[static_cast<std::size_t>(v)]; }),
                 members_.end());
  for (Index p : positions) {  // descending, so positions stay valid
    if (in_trial_) save_rows_from(p);
    downdate_at(p);
  }
  removed_since_rebuild_ += removals;
  rotations_since_rebuild_ += downdate_cost;
  if (!positions.empty()) promote_dependents();
}

Index SpanBasis::drift_limit() const { return std::max<Index>(64, rank_at_rebuild_ / 2); }

bool SpanBasis::needs_refresh() const { return removed_since_rebuild_ > drift_limit(); }

void SpanBasis::begin_trial() {
  if (in_trial_) throw std::logic_error("SpanBasis::begin_trial: a trial is already open");
  in_trial_ = true;
  trial_rank_ = rank();
  saved_from_ = trial_rank_;
  saved_res_ = res_;
  saved_basis_ = basis_;
  saved_members_ = members_;
  saved_removed_ = removed_since_rebuild_;
}

void SpanBasis::save_rows_from(Index row) {
  if (row >= saved_from_) return;
  if (saved_rows_.rows() != w_.rows() || saved_rows_.cols() != w_.cols()) {
    saved_rows_.resize(w_.rows(), w_.cols());
  }
  saved_rows_.middleRows(row, saved_from_ - row) = w_.middleRows(row, saved_from_ - row);
  saved_from_ = row;
}

void SpanBasis::end_trial(bool rollback) {
  if (!in_trial_) throw std::logic_error("SpanBasis::end_trial: no trial is open");
  in_trial_ = false;
  if (!rollback) return;
  bump(g_counters.rollbacks);
  if (saved_from_ < trial_rank_) {
    w_.middleRows(saved_from_, trial_rank_ - saved_from_) =
        saved_rows_.middleRows(saved_from_, trial_rank_ - saved_from_);
  }
  res_.swap(saved_res_);
  for (Index v : basis_) is_basis_[static_cast<std::size_t>(v)] = 0;
  for (Index v : members_) is_member_[static_cast<std::size_t>(v)] = 0;
  basis_.swap(saved_basis_);
  members_.swap(saved_members_);
  for (Index v : basis_) is_basis_[static_cast<std::size_t>(v)] = 1;
  for (Index v : members_) is_member_[static_cast<std::size_t>(v)] = 1;
  removed_since_rebuild_ = saved_removed_;
}

void SpanBasis::downdate_at(Index position) {
  const Index k = rank();
  const Index first = position + 1;  // basis members first..k-1 move up one row
  const Index count = k - first;
  const auto ncols = static_cast<Index>(columns_.size());
  const Index ld = w_.cols();
  double* w = w_.data();
  auto rotation = [](double x, double y, double& c, double& s) {
    const double r = std::sqrt(x * x + y * y);  // |x|, |y| <= ~1: no overflow, unlike hypot's worry
    c = r > 0.0 ? x / r : 1.0;
    s = r > 0.0 ? y / r : 0.0;
  };
  bump(g_counters.downdates);
  const bool forced = g_parallel_sweeps.load(std::memory_order_relaxed);
  const Index chunk = forced ? 8 : kColumnChunk;
  const Index chunks = (ncols + chunk - 1) / chunk;
  if (chunks < 2 || (!forced && count * ncols < (Index{1} << 18))) {
    // Small sweep: rotation c (rows c-1, c) zeroes W(c, basis_c), computed from W as the
    // previous rotations left it, and is applied at once to every column.
    for (Index c = first; c < k; ++c) {
      const Index col = local_[static_cast<std::size_t>(basis_[static_cast<std::size_t>(c)])];
      double ci = 1.0;
      double si = 0.0;
      rotation(w_(c - 1, col), w_(c, col), ci, si);
      rotate_rows(w + (c - 1) * ld, w + c * ld, ncols, ci, si);
    }
  } else {
    // Big sweep, shared among threads by columns. Phase 1: the rotations; to know W(c-1,
    // basis_c) and W(c, basis_c), apply the earlier rotations to basis_c's column only.
    std::vector<double> cs(static_cast<std::size_t>(count));
    std::vector<double> sn(cs.size());
    std::vector<double> v;
    for (Index c = first; c < k; ++c) {
      const Index col = local_[static_cast<std::size_t>(basis_[static_cast<std::size_t>(c)])];
      v.assign(static_cast<std::size_t>(c - position + 1), 0.0);
      for (Index r = position; r <= c; ++r) v[static_cast<std::size_t>(r - position)] = w_(r, col);
      for (Index i = first; i < c; ++i) {
        const auto a = static_cast<std::size_t>(i - 1 - position);
        const double x = v[a];
        const double y = v[a + 1];
        const double ci = cs[static_cast<std::size_t>(i - first)];
        const double si = sn[static_cast<std::size_t>(i - first)];
        v[a] = ci * x + si * y;
        v[a + 1] = -si * x + ci * y;
      }
      rotation(v[static_cast<std::size_t>(c - 1 - position)], v[static_cast<std::size_t>(c - position)],
               cs[static_cast<std::size_t>(c - first)], sn[static_cast<std::size_t>(c - first)]);
    }
    // Phase 2: apply the sweep to independent chunks of columns.
    bump(g_counters.parallel_sweeps);
#pragma omp parallel for schedule(static)
    for (Index ch = 0; ch < chunks; ++ch) {
      const Index j0 = ch * chunk;
      const Index width = std::min(ncols, j0 + chunk) - j0;
      for (Index c = first; c < k; ++c) {
        rotate_rows(w + (c - 1) * ld + j0, w + c * ld + j0, width,
                    cs[static_cast<std::size_t>(c - first)], sn[static_cast<std::size_t>(c - first)]);
      }
    }
  }
  // The last live row is the component each neuron loses with the removed direction.
  const Index last = k - 1;
  for (Index j = 0; j < ncols; ++j) {
    const double lost = w_(last, j);
    res_[j] += lost * lost;
    w_(last, j) = 0.0;
  }
  const Index removed = basis_[static_cast<std::size_t>(position)];
  is_basis_[static_cast<std::size_t>(removed)] = 0;
  basis_.erase(basis_.begin() + position);
  // Below the new diagonal the rotations left rounding dust; the exact value is zero.
  for (Index c = position; c < last; ++c) {
    w_(c + 1, local_[static_cast<std::size_t>(basis_[static_cast<std::size_t>(c)])]) = 0.0;
  }
}

void SpanBasis::promote_dependents() {
  // Dependent members whose residual grew past the rank tolerance join the basis, largest
  // residual first (the same rule as the pivoted Cholesky).
  for (;;) {
    Index best = -1;
    double best_res = tol_;
    for (Index v : members_) {
      if (is_basis_[static_cast<std::size_t>(v)]) continue;
      const double r = res_[local_[static_cast<std::size_t>(v)]];
      if (r > best_res) {
        best_res = r;
        best = v;
      }
    }
    if (best < 0) return;
    append_basis(best);
  }
}

void SpanBasis::append_basis(Index v) {
  bump(g_counters.promotions);
  const Index k = rank();
  const Index col = local_[static_cast<std::size_t>(v)];
  const double norm = std::sqrt(res_[col]);
  const Eigen::VectorXd wv = w_.col(col).head(k);
  const auto ncols = static_cast<Index>(columns_.size());
  Eigen::RowVectorXd row(ncols);
  c_.gather_column(columns_.data(), ncols, v, row.data());
  if (k > 0) row.noalias() -= wv.transpose() * w_.topRows(k);
  row /= norm;
  row[col] = norm;
  w_.row(k) = row;
  res_ -= row.transpose().cwiseAbs2();
  res_[col] = 0.0;
  basis_.push_back(v);
  is_basis_[static_cast<std::size_t>(v)] = 1;
}

}  // namespace nsm
