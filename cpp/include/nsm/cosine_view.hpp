#pragma once
// The cosine matrix of two layers' neurons, read from their Gram matrix where it lies.

#include <Eigen/Core>

namespace nsm {

using Index = Eigen::Index;

/// C = S G S for the symmetric Gram matrix G and S = diag(1 / sqrt(G_vv)) (0 for dead
/// neurons), computed entry by entry from G in place: the engine never holds another n x n
/// matrix. G is column-major with leading dimension ld (a C-order array of a symmetric
/// matrix is the same matrix); it and the scale vector must outlive the view.
class CosineView {
 public:
  CosineView(const double* gram, Index n, Index ld, const double* scale)
      : g_(gram), n_(n), ld_(ld), s_(scale) {}

  Index n() const { return n_; }

  /// C(i, j); the diagonal of a live neuron is exactly 1.
  double operator()(Index i, Index j) const {
    if (i == j) return s_[i] > 0.0 ? 1.0 : 0.0;
    return g_[i + j * ld_] * s_[i] * s_[j];
  }

  /// out[r] = C(rows[r], j) for r < count, reading column j of G (contiguous). Off-diagonal
  /// entries only: a row equal to j gets G_jj * s_j^2, not exactly 1.
  template <class Indices>
  void gather_column(const Indices& rows, Index count, Index j, double* out) const {
    const double* col = g_ + j * ld_;
    const double sj = s_[j];
    for (Index r = 0; r < count; ++r) {
      const Index i = rows[r];
      out[r] = col[i] * s_[i] * sj;
    }
  }

  /// out[t] = C(first + t, j) for t < count: a contiguous run of column j.
  void gather_run(Index first, Index count, Index j, double* out) const {
    const double* col = g_ + j * ld_ + first;
    const double* s = s_ + first;
    const double sj = s_[j];
    for (Index t = 0; t < count; ++t) out[t] = col[t] * s[t] * sj;
  }

 private:
  const double* g_;
  Index n_;
  Index ld_;
  const double* s_;
};

}  // namespace nsm
