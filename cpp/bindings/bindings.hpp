#pragma once
#include <pybind11/pybind11.h>

namespace nsm::bindings {
void bind_gram(pybind11::module_& m);
void bind_match(pybind11::module_& m);
void bind_minimal(pybind11::module_& m);
}  // namespace nsm::bindings
