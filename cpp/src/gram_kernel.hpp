#pragma once
// The per-instruction-set Gram kernels. This header must not include Eigen: each kernel
// translation unit renames Eigen's namespace so that its template instantiations, compiled
// for a different instruction set, can never be merged with the portable ones by the linker.

#include <cstddef>

namespace nsm::kernels {

using KernelFn = void (*)(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, bool row_major, double* g,
                          std::ptrdiff_t ldg, int num_threads);

namespace generic {
void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, bool row_major, double* g,
                    std::ptrdiff_t ldg, int num_threads);
}
namespace avx2 {
void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, bool row_major, double* g,
                    std::ptrdiff_t ldg, int num_threads);
}
namespace avx512 {
void syrk_lower_add(const double* b, std::ptrdiff_t rows, std::ptrdiff_t n, bool row_major, double* g,
                    std::ptrdiff_t ldg, int num_threads);
}

}  // namespace nsm::kernels
