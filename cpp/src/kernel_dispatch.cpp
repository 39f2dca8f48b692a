// Run-time choice of the dense kernels: the best instruction set that was compiled in and that
// this CPU supports, unless a test or benchmark forces one (set_kernels).

#include <atomic>
#include <stdexcept>
#include <string>

#include "dense_kernels.hpp"
#include "nsm/dense.hpp"

namespace nsm {
namespace {

using kernels::KernelSet;

bool cpu_has(const std::string& name) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (name == "avx512") {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
  return name == "generic";
}

// Best first.
const KernelSet* const kAvailable[] = {
#ifdef NSM_HAVE_KERNEL_AVX512
    &kernels::avx512::kernels,
#endif
#ifdef NSM_HAVE_KERNEL_AVX2
    &kernels::avx2::kernels,
#endif
    &kernels::generic::kernels,
};

const KernelSet* best_kernels() {
  for (const KernelSet* k : kAvailable) {
    if (cpu_has(k->name)) return k;
  }
  return &kernels::generic::kernels;
}

std::atomic<const KernelSet*>& chosen() {
  static std::atomic<const KernelSet*> set{best_kernels()};
  return set;
}

}  // namespace

std::string kernel_name() { return chosen().load()->name; }

void set_kernels(const std::string& name) {
  if (name.empty()) {
    chosen().store(best_kernels());
    return;
  }
  for (const KernelSet* k : kAvailable) {
    if (name == k->name) {
      if (!cpu_has(name)) {
        throw std::invalid_argument("kernel '" + name + "' is compiled in but this CPU lacks it");
      }
      chosen().store(k);
      return;
    }
  }
  throw std::invalid_argument("kernel '" + name + "' is not compiled into this build");
}

void syrk_lower_add(const double* b, Index rows, Index n, double* g, Index ldg, int num_threads) {
  chosen().load()->syrk_lower_add(b, rows, n, g, ldg, num_threads);
}

void syrk_lower_add_mixed(const float* b, Index rows, Index n, double* g, Index ldg, int num_threads) {
  chosen().load()->syrk_lower_add_mixed(b, rows, n, g, ldg, num_threads);
}

void subtract_aat(const double* a, Index lda, Index rows, Index k, double* c, Index ldc) {
  chosen().load()->subtract_aat(a, lda, rows, k, c, ldc);
}

void solve_lower(const double* l, Index ldl, Index k, double* b, Index ldb, Index cols) {
  chosen().load()->solve_lower(l, ldl, k, b, ldb, cols);
}

void solve_lower_f32(const float* l, Index ldl, Index k, float* b, Index ldb, Index cols) {
  chosen().load()->solve_lower_f32(l, ldl, k, b, ldb, cols);
}

Index pivoted_cholesky_lower(double* a, Index lda, Index m, double tol, const double* leaves_soon,
                             double threshold, Index* perm) {
  return chosen().load()->pivoted_cholesky_lower(a, lda, m, tol, leaves_soon, threshold, perm);
}

void rotate_rows(double* x, double* y, Index n, double c, double s) {
  chosen().load()->rotate_rows(x, y, n, c, s);
}

}  // namespace nsm
