#pragma once
// The dense kernels compiled once per instruction set. This header must not include Eigen:
// each kernel translation unit renames Eigen's namespace so that its template instantiations,
// compiled for a different instruction set, can never be merged with the portable ones by the
// linker. All matrices are column-major with a leading dimension.

#include <cstddef>

namespace nsm::kernels {

struct KernelSet {
  const char* name;
  /// G(lower) += B^T B for the dense row-major rows x n block B.
  void (*syrk_lower_add)(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, double* g,
                         std::ptrdiff_t ldg, int num_threads);
  /// C -= A A^T on the lower triangle of the rows x rows C, for A rows x k.
  void (*subtract_aat)(const double* a, std::ptrdiff_t lda, std::ptrdiff_t rows, std::ptrdiff_t k,
                       double* c, std::ptrdiff_t ldc);
  /// B := L^{-1} B for the lower-triangular k x k L and the row-major k x cols B.
  void (*solve_lower)(const double* l, std::ptrdiff_t ldl, std::ptrdiff_t k, double* b,
                      std::ptrdiff_t ldb, std::ptrdiff_t cols);
  /// (x, y) := (c x + s y, -s x + c y) elementwise over n entries (a Givens rotation of rows).
  void (*rotate_rows)(double* x, double* y, std::ptrdiff_t n, double c, double s);
  /// As syrk_lower_add for a float32 block: float32 products of the block, added into G.
  void (*syrk_lower_add_mixed)(const float* b, std::ptrdiff_t rows, std::ptrdiff_t n, double* g,
                               std::ptrdiff_t ldg, int num_threads);
  /// Pivoted Cholesky of the lower triangle of the m x m a (see nsm::pivoted_cholesky_lower).
  std::ptrdiff_t (*pivoted_cholesky_lower)(double* a, std::ptrdiff_t lda, std::ptrdiff_t m, double tol,
                                           const double* leaves_soon, double threshold,
                                           std::ptrdiff_t* perm);
  /// As solve_lower in float32.
  void (*solve_lower_f32)(const float* l, std::ptrdiff_t ldl, std::ptrdiff_t k, float* b,
                          std::ptrdiff_t ldb, std::ptrdiff_t cols);
};

namespace generic { extern const KernelSet kernels; }
namespace avx2 { extern const KernelSet kernels; }
namespace avx512 { extern const KernelSet kernels; }

}  // namespace nsm::kernels
