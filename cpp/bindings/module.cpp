#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "nsm's compiled core (private: use the nsm package)";
  nsm::bindings::bind_gram(m);
  nsm::bindings::bind_match(m);
  nsm::bindings::bind_minimal(m);
}
