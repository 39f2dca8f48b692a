// The dense kernels, compiled once per instruction set (NSM_ISA = generic, avx2 or avx512)
// with that set's compiler flags; cpp/src/kernel_dispatch.cpp picks one set at run time.
// No std:: template may be used here (containers, std::min/max, ...): its instantiation would
// be compiled with this set's flags and could be the copy the linker keeps for the portable
// code. Eigen's renamed types stand in for them; tests/test_kernel_symbols.py checks.

#ifndef NSM_ISA
#error "NSM_ISA must name the instruction set this kernel is compiled for"
#endif

#define NSM_CAT_(a, b) a##b
#define NSM_CAT(a, b) NSM_CAT_(a, b)
#define NSM_STRINGIFY_(a) #a
#define NSM_STRINGIFY(a) NSM_STRINGIFY_(a)
// A private copy of Eigen per instruction set: see dense_kernels.hpp.
#define Eigen NSM_CAT(nsm_eigen_, NSM_ISA)

#include <Eigen/Core>

#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "dense_kernels.hpp"

namespace nsm::kernels::NSM_ISA {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;

namespace {

// One thread's share: G(lower) += B^T B.
template <class Block, class Gram>
void add_products(const Block& block, Gram& gram) {
  gram.template triangularView<Eigen::Lower>() += block.transpose() * block;
}

template <class Block>
void accumulate(const Block& block, double* g, std::ptrdiff_t ldg, int num_threads) {
  const std::ptrdiff_t n = block.cols();
  const std::ptrdiff_t rows = block.rows();
  Eigen::Map<Mat, 0, Stride> gram(g, n, n, Stride(ldg));
  const int threads = num_threads > 1 ? num_threads : 1;

  if (threads == 1 || n < 128 * threads) {
    // Few neurons: threads split the samples, each into a private n x n sum (small here).
    const std::ptrdiff_t by_rows = rows / 256 > 1 ? rows / 256 : 1;
    const int used = static_cast<int>(by_rows < threads ? by_rows : threads);
    if (used == 1) {
      add_products(block, gram);
      return;
    }
    // Private sums, added in thread order afterwards so that results do not depend on timing.
    Mat partial(n, n * used);  // thread t's sum is columns [t n, (t + 1) n)
#pragma omp parallel num_threads(used)
    {
#ifdef _OPENMP
      const int t = omp_get_thread_num();
#else
      const int t = 0;
#endif
      auto local = partial.middleCols(t * n, n);
      local.setZero();
      const std::ptrdiff_t r0 = rows * t / used;
      const std::ptrdiff_t r1 = rows * (t + 1) / used;
      const auto part = block.middleRows(r0, r1 - r0);
      add_products(part, local);
    }
    for (int t = 0; t < used; ++t) {
      gram.template triangularView<Eigen::Lower>() += partial.middleCols(t * n, n);
    }
    return;
  }

  // Many neurons: one strip of output rows per thread, cut so that every strip holds the same
  // area of the lower triangle: strip k is rows [b_k, b_k+1) with b_k = n sqrt(k / T), one
  // rectangular GEMM left of the diagonal and one triangular product on it. Eigen does not
  // nest its own threads inside the region.
  Eigen::Matrix<std::ptrdiff_t, Eigen::Dynamic, 1> bounds(threads + 1);
  for (int k = 0; k <= threads; ++k) {
    const double share = static_cast<double>(k) / threads;
    bounds[k] = static_cast<std::ptrdiff_t>(std::lround(static_cast<double>(n) * std::sqrt(share)));
  }
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int k = 0; k < threads; ++k) {
    const std::ptrdiff_t r0 = bounds[k];
    const std::ptrdiff_t nr = bounds[k + 1] - r0;
    if (nr == 0) continue;
    if (r0 > 0) {
      gram.block(r0, 0, nr, r0).noalias() += block.middleCols(r0, nr).transpose() * block.leftCols(r0);
    }
    gram.block(r0, r0, nr, nr).template triangularView<Eigen::Lower>() +=
        block.middleCols(r0, nr).transpose() * block.middleCols(r0, nr);
  }
}

}  // namespace

void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, double* g,
                    std::ptrdiff_t ldg, int num_threads) {
  using RowMajorBlock = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  accumulate(Eigen::Map<const RowMajorBlock>(b, rows, n), g, ldg, num_threads);
}

void syrk_lower_add_mixed(const float* b, std::ptrdiff_t rows, std::ptrdiff_t n, double* g,
                          std::ptrdiff_t ldg, int num_threads) {
  // Float32 products of this block of rows (the block length bounds their rounding), each added
  // into the float64 Gram. Threads take strips of output rows of equal area as in accumulate():
  // a GEMM left of the diagonal and a triangular product on it.
  using RowMajorBlock = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using FloatMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  const Eigen::Map<const RowMajorBlock> block(b, rows, n);
  Eigen::Map<Mat, 0, Stride> gram(g, n, n, Stride(ldg));
  const int threads =
      std::max(1, std::min(num_threads, static_cast<int>(std::max<std::ptrdiff_t>(n / 128, 1))));
  std::vector<std::ptrdiff_t> bounds(static_cast<std::size_t>(threads) + 1);
  for (int k = 0; k <= threads; ++k) {
    const double share = static_cast<double>(k) / threads;
    bounds[static_cast<std::size_t>(k)] =
        static_cast<std::ptrdiff_t>(std::lround(static_cast<double>(n) * std::sqrt(share)));
  }
  auto add_strip = [&](int k) {
    const std::ptrdiff_t r0 = bounds[static_cast<std::size_t>(k)];
    const std::ptrdiff_t nr = bounds[static_cast<std::size_t>(k) + 1] - r0;
    if (nr == 0) return;
    const auto mine = block.middleCols(r0, nr);
    if (r0 > 0) {
      const FloatMat left = mine.transpose() * block.leftCols(r0);
      gram.block(r0, 0, nr, r0) += left.cast<double>();
    }
    FloatMat diag = FloatMat::Zero(nr, nr);
    diag.triangularView<Eigen::Lower>() += mine.transpose() * mine;
    gram.block(r0, r0, nr, nr).triangularView<Eigen::Lower>() += diag.cast<double>();
  };
  if (threads == 1) {  // outside a team, so that Eigen may use its own threads
    add_strip(0);
    return;
  }
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int k = 0; k < threads; ++k) add_strip(k);
}

void subtract_aat(const double* a, std::ptrdiff_t lda, std::ptrdiff_t rows, std::ptrdiff_t k, double* c,
                  std::ptrdiff_t ldc) {
  // The lower triangle only, in strips of columns shared among the threads: strip j is
  // C[j0:, j0:j1] -= A[j0:, :] A[j0:j1, :]^T (a GEMM; Eigen does not nest threads inside).
  constexpr std::ptrdiff_t strip = 64;
  const std::ptrdiff_t strips = (rows + strip - 1) / strip;
  const bool parallel =
      static_cast<double>(rows) * static_cast<double>(rows) * static_cast<double>(k) > 4e6;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (std::ptrdiff_t s = 0; s < strips; ++s) {
    const std::ptrdiff_t j0 = s * strip;
    const std::ptrdiff_t w = std::min(strip, rows - j0);
    const Eigen::Map<const Mat, 0, Stride> below(a + j0, rows - j0, k, Stride(lda));
    const Eigen::Map<const Mat, 0, Stride> mine(a + j0, w, k, Stride(lda));
    Eigen::Map<Mat, 0, Stride> cm(c + j0 + j0 * ldc, rows - j0, w, Stride(ldc));
    cm.noalias() -= below * mine.transpose();
  }
}

namespace {

// B := L^{-1} B for the row-major B, in Scalar (see solve_lower).
template <class Scalar>
void solve_lower_blocked(const Scalar* l, std::ptrdiff_t ldl, std::ptrdiff_t k, Scalar* b,
                         std::ptrdiff_t ldb, std::ptrdiff_t cols) {
  using ColMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  constexpr std::ptrdiff_t kRows = 128;
  const Eigen::Map<const ColMat, 0, Stride> lm(l, k, k, Stride(ldl));
  std::ptrdiff_t chunk = ((cols + 3) / 4 + 63) / 64 * 64;
  chunk = chunk < 128 ? 128 : (chunk > 512 ? 512 : chunk);
  const std::ptrdiff_t chunks = (cols + chunk - 1) / chunk;
  const bool parallel =
      static_cast<double>(k) * static_cast<double>(k) * static_cast<double>(cols) > 4e6;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (std::ptrdiff_t ch = 0; ch < chunks; ++ch) {
    const std::ptrdiff_t j0 = ch * chunk;
    const std::ptrdiff_t w = cols - j0 < chunk ? cols - j0 : chunk;
    Eigen::Map<RowMat, 0, Stride> bm(b + j0, k, w, Stride(ldb));
    for (std::ptrdiff_t i0 = 0; i0 < k; i0 += kRows) {
      const std::ptrdiff_t h = k - i0 < kRows ? k - i0 : kRows;
      lm.block(i0, i0, h, h).template triangularView<Eigen::Lower>().solveInPlace(bm.middleRows(i0, h));
      const std::ptrdiff_t rest = k - i0 - h;
      if (rest > 0)
        bm.bottomRows(rest).noalias() -= lm.block(i0 + h, i0, rest, h) * bm.middleRows(i0, h);
    }
  }
}

}  // namespace

void solve_lower(const double* l, std::ptrdiff_t ldl, std::ptrdiff_t k, double* b, std::ptrdiff_t ldb,
                 std::ptrdiff_t cols) {
  // B is row-major (row stride ldb); its columns are independent right-hand sides, solved in
  // chunks shared among the threads. A chunk is solved by blocks of 128 rows: a small
  // triangular solve, then one GEMM for all rows below (most of the flops, at GEMM speed; a
  // quarter faster than Eigen's triangular solve of the whole chunk). The chunks (at least four
  // where the columns allow, at most 512 wide) depend on the columns only, not on the thread
  // count, so neither do the results.
  solve_lower_blocked(l, ldl, k, b, ldb, cols);
}

void solve_lower_f32(const float* l, std::ptrdiff_t ldl, std::ptrdiff_t k, float* b, std::ptrdiff_t ldb,
                     std::ptrdiff_t cols) {
  // As solve_lower in float32: twice the flops per instruction.
  solve_lower_blocked(l, ldl, k, b, ldb, cols);
}

namespace {

void swap_values(double& x, double& y) {
  const double t = x;
  x = y;
  y = t;
}

}  // namespace

std::ptrdiff_t pivoted_cholesky_lower(double* a, std::ptrdiff_t lda, std::ptrdiff_t m, double tol,
                                      const double* leaves_soon, double threshold,
                                      std::ptrdiff_t* perm) {
  // LAPACK dpstrf's blocked algorithm (panels of kPanel columns: left-looking inside a panel,
  // one rank-kPanel update of the trailing matrix after it), with the same pivots, except that
  // the row swaps of finished panels' columns wait for the end: there each of their columns is
  // permuted once, where dpstrf swaps strided rows of every finished column at every pivot.
  using Index = std::ptrdiff_t;
  using IndexVector = Eigen::Matrix<Index, Eigen::Dynamic, 1>;
  using IndexMatrix = Eigen::Matrix<Index, Eigen::Dynamic, Eigen::Dynamic>;
  constexpr Index kPanel = 64;
  Eigen::Map<Mat, 0, Stride> am(a, m, m, Stride(lda));
  Eigen::VectorXd d = am.diagonal();  // current Schur complement diagonal
  Eigen::VectorXd soon;
  if (leaves_soon != nullptr) soon = Eigen::Map<const Eigen::VectorXd>(leaves_soon, m);
  for (Index i = 0; i < m; ++i) perm[i] = i;
  // Column f of `order` is perm as it was when panel f was finished: the order of that panel's rows.
  IndexMatrix order(m, (m + kPanel - 1) / kPanel);
  Index finished = 0;
  Index rank = m;
  for (Index j0 = 0; j0 < m && rank == m; j0 += kPanel) {
    const Index j1 = j0 + kPanel < m ? j0 + kPanel : m;
    for (Index jj = j0; jj < j1; ++jj) {
      Index p = jj;
      const double largest = d.tail(m - jj).maxCoeff(&p);
      p += jj;
      if (!(largest > tol)) {
        rank = jj;
        break;
      }
      if (leaves_soon != nullptr) {
        const double bar = threshold * largest > tol ? threshold * largest : tol;
        for (Index i = jj; i < m; ++i) {
          if (d[i] >= bar && soon[i] < soon[p]) p = i;
        }
      }
      if (p != jj) {
        // Symmetric swap of rows/columns jj < p of the trailing lower triangle, and of the rows
        // of this panel's finished columns.
        swap_values(am(jj, jj), am(p, p));
        double* col_j = a + jj * lda;
        double* row_p = a + p;
        for (Index i = jj + 1; i < p; ++i) swap_values(col_j[i], row_p[i * lda]);
        if (p + 1 < m) am.col(jj).tail(m - p - 1).swap(am.col(p).tail(m - p - 1));
        for (Index c = j0; c < jj; ++c) swap_values(am(jj, c), am(p, c));
        swap_values(d[jj], d[p]);
        if (leaves_soon != nullptr) swap_values(soon[jj], soon[p]);
        const Index t = perm[jj];
        perm[jj] = perm[p];
        perm[p] = t;
      }
      const Index below = m - jj - 1;
      if (jj > j0 && below > 0) {
        // Columns j0..jj-1 of this panel are not yet applied to the trailing matrix.
        am.col(jj).tail(below).noalias() -=
            am.block(jj + 1, j0, below, jj - j0) * am.row(jj).segment(j0, jj - j0).transpose();
      }
      const double pivot = std::sqrt(d[jj]);
      am(jj, jj) = pivot;
      if (below > 0) {
        am.col(jj).tail(below) /= pivot;
        d.tail(below) -= am.col(jj).tail(below).cwiseAbs2();
      }
    }
    if (rank != m) break;
    for (Index i = 0; i < m; ++i) order(i, finished) = perm[i];
    ++finished;
    const Index rest = m - j1;
    if (rest > 0) subtract_aat(a + j1 + j0 * lda, lda, rest, j1 - j0, a + j1 + j1 * lda, lda);
  }
  // The deferred swaps: row i of a finished panel's columns (below the panel) is the row that
  // held perm[i] when the panel was finished. The panel that stopped early swapped its own rows.
  IndexVector where(m);
  Eigen::VectorXd column(m);
  for (Index f = 0; f < finished; ++f) {
    const Index c0 = f * kPanel;
    const Index c1 = c0 + kPanel < m ? c0 + kPanel : m;
    for (Index i = 0; i < m; ++i) where[order(i, f)] = i;
    bool moved = false;
    for (Index i = c1; i < m && !moved; ++i) moved = where[perm[i]] != i;
    if (!moved) continue;
    for (Index c = c0; c < c1; ++c) {
      double* col = a + c * lda;
      for (Index i = c1; i < m; ++i) column[i] = col[where[perm[i]]];
      for (Index i = c1; i < m; ++i) col[i] = column[i];
    }
  }
  return rank;
}

void rotate_rows(double* __restrict x, double* __restrict y, std::ptrdiff_t n, double c, double s) {
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    const double a = x[j];
    const double b = y[j];
    x[j] = c * a + s * b;
    y[j] = c * b - s * a;
  }
}

extern const KernelSet kernels;
const KernelSet kernels = {
    NSM_STRINGIFY(NSM_ISA), &syrk_lower_add,       &subtract_aat,           &solve_lower,
    &rotate_rows,           &syrk_lower_add_mixed, &pivoted_cholesky_lower, &solve_lower_f32};

}  // namespace nsm::kernels::NSM_ISA
