// Run-time choice of the Gram kernel: the best instruction set that was compiled in and that
// this CPU supports, unless a test or benchmark forces one (set_gram_kernel).

#include <atomic>
#include <stdexcept>
#include <string>

#include "gram_kernel.hpp"
#include "nsm/gram.hpp"

namespace nsm {
namespace {

struct Kernel {
  const char* name;
  kernels::KernelFn fn;
};

bool cpu_has(const std::string& name) {
#if defined(__x86_64__) || defined(_M_X64)
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
const Kernel kAvailable[] = {
#ifdef NSM_HAVE_KERNEL_AVX512
    {"avx512", &kernels::avx512::syrk_lower_add},
#endif
#ifdef NSM_HAVE_KERNEL_AVX2
    {"avx2", &kernels::avx2::syrk_lower_add},
#endif
    {"generic", &kernels::generic::syrk_lower_add},
};

const Kernel* best_kernel() {
  for (const Kernel& k : kAvailable) {
    if (cpu_has(k.name)) return &k;
  }
  return nullptr;  // unreachable: generic is always there
}

std::atomic<const Kernel*>& chosen() {
  static std::atomic<const Kernel*> kernel{best_kernel()};
  return kernel;
}

}  // namespace

std::string gram_kernel_name() { return chosen().load()->name; }

void set_gram_kernel(const std::string& name) {
  if (name.empty()) {
    chosen().store(best_kernel());
    return;
  }
  for (const Kernel& k : kAvailable) {
    if (name == k.name) {
      if (!cpu_has(name)) {
        throw std::invalid_argument("kernel '" + name + "' is compiled in but this CPU lacks it");
      }
      chosen().store(&k);
      return;
    }
  }
  throw std::invalid_argument("kernel '" + name + "' is not compiled into this build");
}

void syrk_lower_add(const double* b, Index rows, Index n, bool row_major, double* g, Index ldg,
                    int num_threads) {
  chosen().load()->fn(b, rows, n, row_major, g, ldg, num_threads);
}

}  // namespace nsm
