# Compiler flags, each guarded by the compilers that understand it (as kiss-icp's
# cmake/CompilerOptions.cmake does): a flag a compiler does not know never reaches it.

include(CheckCXXCompilerFlag)

set(NSM_GNU_LIKE "$<OR:$<CXX_COMPILER_ID:GNU>,$<CXX_COMPILER_ID:Clang>,$<CXX_COMPILER_ID:AppleClang>>")
set(NSM_MSVC_LIKE "$<CXX_COMPILER_ID:MSVC>")

# Warnings on our own targets (third-party headers come in as SYSTEM includes).
function(nsm_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<${NSM_GNU_LIKE}:-Wall -Wextra -Wpedantic -Wconversion -Wshadow>
    $<${NSM_MSVC_LIKE}:/W4 /permissive->)
  if(NSM_WERROR)
    target_compile_options(${target} PRIVATE $<${NSM_GNU_LIKE}:-Werror> $<${NSM_MSVC_LIKE}:/WX>)
  endif()
endfunction()

# The instruction sets the dense kernels are compiled for, beyond the portable one: only on
# x86-64 and only with a compiler that takes GCC-style ISA flags (the run-time CPU check in
# cpp/src/kernel_dispatch.cpp is GCC/Clang's __builtin_cpu_supports as well).
# Sets NSM_KERNEL_ISAS and NSM_FLAGS_<isa> in the caller's scope.
macro(nsm_kernel_isas)
  set(NSM_KERNEL_ISAS generic)
  set(NSM_FLAGS_generic "")
  set(NSM_FLAGS_avx2 -mavx2 -mfma)
  set(NSM_FLAGS_avx512 -mavx512f -mavx512dq -mavx512vl -mavx512bw -mavx2 -mfma)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    foreach(isa avx2 avx512)
      string(REPLACE ";" " " _nsm_flags "${NSM_FLAGS_${isa}}")
      check_cxx_compiler_flag("${_nsm_flags}" NSM_COMPILER_TAKES_${isa})
      if(NSM_COMPILER_TAKES_${isa} AND NOT MSVC)
        list(APPEND NSM_KERNEL_ISAS ${isa})
      else()
        message(WARNING "nsm: ${CMAKE_CXX_COMPILER_ID} does not take '${_nsm_flags}': the ${isa} "
                       "kernels are not built (the portable kernels are; results are the same, slower)")
      endif()
    endforeach()
  else()
    message(STATUS "nsm: ${CMAKE_SYSTEM_PROCESSOR} is not x86-64: only the portable kernels are built")
  endif()
  # Every inline function and template the kernel copies instantiate (Eigen's, and anything of
  # std:: that Eigen pulls in) stays local to its copy instead of a weak symbol that the linker
  # could share with the portable code: with GCC, -fno-weak. tests/test_kernel_symbols.py checks.
  check_cxx_compiler_flag(-fno-weak NSM_COMPILER_TAKES_FNO_WEAK)
  set(NSM_KERNEL_LOCAL_FLAGS "")
  if(NSM_COMPILER_TAKES_FNO_WEAK)
    set(NSM_KERNEL_LOCAL_FLAGS -fno-weak)
  endif()
endmacro()
