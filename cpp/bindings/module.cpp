#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "nsm's compiled core (private: use the nsm package)";
  auto testing = m.def_submodule("_testing", "Hooks for nsm's own tests and benchmarks (not an API)");
  nsm::bindings::bind_gram(m, testing);
  nsm::bindings::bind_match(m, testing);
  nsm::bindings::bind_minimal(m);
}
