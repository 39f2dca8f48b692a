// One Gram kernel, compiled once per instruction set (NSM_ISA = generic, avx2 or avx512) with
// that set's compiler flags; cpp/src/gram_dispatch.cpp picks one at run time.

#ifndef NSM_ISA
#error "NSM_ISA must name the instruction set this kernel is compiled for"
#endif

#define NSM_CAT_(a, b) a##b
#define NSM_CAT(a, b) NSM_CAT_(a, b)
// A private copy of Eigen per instruction set: see gram_kernel.hpp.
#define Eigen NSM_CAT(nsm_eigen_, NSM_ISA)

#include <Eigen/Core>

#include <algorithm>
#include <utility>
#include <vector>

#include "gram_kernel.hpp"

namespace nsm::kernels::NSM_ISA {

void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, double* g,
                    std::ptrdiff_t ldg, int num_threads) {
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  const Eigen::Map<const Mat> block(b, rows, n);
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> gram(g, n, n, Eigen::OuterStride<>(ldg));

  // Tiles of the lower triangle, shared among threads; each tile is one single-threaded
  // GEMM (Eigen does not nest its own threads inside a parallel region).
  const std::ptrdiff_t tile = n <= 256 ? n : 192;
  std::vector<std::pair<std::ptrdiff_t, std::ptrdiff_t>> tiles;
  for (std::ptrdiff_t j = 0; j < n; j += tile) {
    for (std::ptrdiff_t i = j; i < n; i += tile) tiles.emplace_back(i, j);
  }
  const auto count = static_cast<std::ptrdiff_t>(tiles.size());
  (void)num_threads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads) if (count > 1)
  for (std::ptrdiff_t t = 0; t < count; ++t) {
    const auto [i, j] = tiles[static_cast<std::size_t>(t)];
    const std::ptrdiff_t ni = std::min(tile, n - i);
    const std::ptrdiff_t nj = std::min(tile, n - j);
    if (i == j) {
      gram.block(i, i, ni, ni).template triangularView<Eigen::Lower>() +=
          block.middleCols(i, ni).transpose() * block.middleCols(i, ni);
    } else {
      gram.block(i, j, ni, nj).noalias() +=
          block.middleCols(i, ni).transpose() * block.middleCols(j, nj);
    }
  }
}

}  // namespace nsm::kernels::NSM_ISA
