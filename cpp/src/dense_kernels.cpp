// The dense kernels, compiled once per instruction set (NSM_ISA = generic, avx2 or avx512)
// with that set's compiler flags; cpp/src/kernel_dispatch.cpp picks one set at run time.

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

#include <algorithm>
#include <cmath>
#include <vector>

#include "dense_kernels.hpp"

namespace nsm::kernels::NSM_ISA {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Stride = Eigen::OuterStride<>;

namespace {

template <class Block>
void accumulate(const Block& block, double* g, std::ptrdiff_t ldg, int num_threads) {
  const std::ptrdiff_t n = block.cols();
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> gram(g, n, n, Eigen::OuterStride<>(ldg));

  // One strip of rows per thread, cut so that every strip holds the same area of the lower
  // triangle: strip k is rows [b_k, b_k+1) with b_k = n sqrt(k / T). Each is one rectangular
  // GEMM (left of the diagonal) and one triangular product (on it), both single-threaded
  // (Eigen does not nest its own threads inside a parallel region).
  const int strips = static_cast<int>(std::max<std::ptrdiff_t>(1, std::min<std::ptrdiff_t>(num_threads, n / 64)));
  std::vector<std::ptrdiff_t> bounds(static_cast<std::size_t>(strips) + 1);
  for (int k = 0; k <= strips; ++k) {
    bounds[static_cast<std::size_t>(k)] = static_cast<std::ptrdiff_t>(
        std::lround(static_cast<double>(n) * std::sqrt(static_cast<double>(k) / strips)));
  }
#pragma omp parallel for schedule(static, 1) num_threads(strips) if (strips > 1)
  for (int k = 0; k < strips; ++k) {
    const std::ptrdiff_t r0 = bounds[static_cast<std::size_t>(k)];
    const std::ptrdiff_t nr = bounds[static_cast<std::size_t>(k) + 1] - r0;
    if (nr == 0) continue;
    if (r0 > 0) {
      gram.block(r0, 0, nr, r0).noalias() += block.middleCols(r0, nr).transpose() * block.leftCols(r0);
    }
    gram.block(r0, r0, nr, nr).template triangularView<Eigen::Lower>() +=
        block.middleCols(r0, nr).transpose() * block.middleCols(r0, nr);
  }
}

}  // namespace

void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, bool row_major,
                    double* g, std::ptrdiff_t ldg, int num_threads) {
  constexpr int Dyn = Eigen::Dynamic;
  if (row_major) {
    accumulate(Eigen::Map<const Eigen::Matrix<double, Dyn, Dyn, Eigen::RowMajor>>(b, rows, n), g,
               ldg, num_threads);
  } else {
    accumulate(Eigen::Map<const Eigen::Matrix<double, Dyn, Dyn, Eigen::ColMajor>>(b, rows, n), g,
               ldg, num_threads);
  }
}

void subtract_aat(const double* a, std::ptrdiff_t lda, std::ptrdiff_t rows, std::ptrdiff_t k,
                  double* c, std::ptrdiff_t ldc) {
  const Eigen::Map<const Mat, 0, Stride> am(a, rows, k, Stride(lda));
  Eigen::Map<Mat, 0, Stride> cm(c, rows, rows, Stride(ldc));
  cm.noalias() -= am * am.transpose();
}

void solve_lower(const double* l, std::ptrdiff_t ldl, std::ptrdiff_t k, double* b,
                 std::ptrdiff_t ldb, std::ptrdiff_t cols) {
  const Eigen::Map<const Mat, 0, Stride> lm(l, k, k, Stride(ldl));
  Eigen::Map<Mat, 0, Stride> bm(b, k, cols, Stride(ldb));
  lm.triangularView<Eigen::Lower>().solveInPlace(bm);
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
const KernelSet kernels = {NSM_STRINGIFY(NSM_ISA), &syrk_lower_add, &subtract_aat, &solve_lower,
                           &rotate_rows};

}  // namespace nsm::kernels::NSM_ISA
