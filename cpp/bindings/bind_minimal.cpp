#include <vector>

#include "bindings.hpp"
#include "nsm/minimal_match.hpp"

namespace nsm::bindings {

void bind_minimal(py::module_& m) {
  py::class_<MinimalMatchSearch>(m, "MinimalMatchSearch")
      .def(py::init([](const MatchEngine& engine, double eps, const std::vector<Index>& order) {
             py::gil_scoped_release release;
             return new MinimalMatchSearch(engine, eps, order);
           }),
           py::arg("engine"), py::arg("eps"), py::arg("order"), py::keep_alive<1, 2>())
      .def("maximum_match", [](const MinimalMatchSearch& s) { return to_mask(s.maximum_match()); })
      .def(
          "find",
          [](const MinimalMatchSearch& s, Index v, const std::vector<Index>& order) -> py::object {
            std::vector<char> mask;
            // Ctrl-C: the search asks about every 50 ms whether a signal arrived.
            interruptible([&](const StopCheck& stop) { mask = s.find(v, order, stop); });
            if (mask.empty()) return py::none();
            return to_mask(mask);
          },
          py::arg("neuron"), py::arg("order"));
}

}  // namespace nsm::bindings
