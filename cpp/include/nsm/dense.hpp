#pragma once
// Dense matrix kernels, dispatched at run time to the best instruction set this CPU has
// (generic x86-64, AVX2+FMA or AVX-512). All matrices are column-major with a leading dimension.

#include <Eigen/Core>

#include <string>

namespace nsm {

using Index = Eigen::Index;

/// Name of the kernel set in use ("generic", "avx2" or "avx512").
std::string kernel_name();

/// Forces a kernel set by name (for tests and benchmarks); throws std::invalid_argument if it
/// is not compiled in or the CPU lacks it. An empty name restores the automatic choice.
void set_kernels(const std::string& name);

/// G += B^T B on the lower triangle of the n x n matrix g, where B is a dense row-major
/// rows x n block (each sample contiguous).
void syrk_lower_add(const double* b, Index rows, Index n, double* g, Index ldg, int num_threads);

/// As syrk_lower_add for a float32 block: the products are computed in float32 (the block's
/// length bounds their rounding) and added into the float64 g.
void syrk_lower_add_mixed(const float* b, Index rows, Index n, double* g, Index ldg, int num_threads);

/// C -= A A^T on the lower triangle of the rows x rows matrix C, for A rows x k (threads share
/// strips of columns).
void subtract_aat(const double* a, Index lda, Index rows, Index k, double* c, Index ldc);

/// B := L^{-1} B for the k x k lower-triangular L and the row-major k x cols matrix B (row
/// stride ldb; threads share chunks of its columns).
void solve_lower(const double* l, Index ldl, Index k, double* b, Index ldb, Index cols);

/// As solve_lower in float32 (about twice as fast; for results that only need float32's
/// accuracy).
void solve_lower_f32(const float* l, Index ldl, Index k, float* b, Index ldb, Index cols);

/// Rank-revealing Cholesky with diagonal pivoting of the symmetric positive semi-definite m x m
/// matrix whose lower triangle a holds (column-major, leading dimension lda; overwritten: the
/// first `rank` columns of its lower trapezoid hold L in pivoted order). Stops when no Schur
/// diagonal exceeds tol; returns the rank. perm (m entries) receives the original row of each
/// pivoted row. Each pivot is the largest Schur diagonal, or with leaves_soon (m values, may be
/// null) the row with the smallest leaves_soon among those at least threshold times the largest.
Index pivoted_cholesky_lower(double* a, Index lda, Index m, double tol, const double* leaves_soon,
                             double threshold, Index* perm);

/// (x, y) := (c x + s y, -s x + c y) over n entries: a Givens rotation of two rows.
void rotate_rows(double* x, double* y, Index n, double c, double s);

}  // namespace nsm
