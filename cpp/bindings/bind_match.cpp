#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings.hpp"
#include "nsm/match_engine.hpp"

namespace py = pybind11;

namespace nsm::bindings {

void bind_match(py::module_& m) {
  py::class_<MatchEngine>(m, "MatchEngine")
      .def(py::init([](const Eigen::MatrixXd& gram, Index n_x, std::int64_t n_samples,
                       double dead_tol, double rank_tol, int num_threads) {
             MatchOptions options;
             options.dead_tol = dead_tol;
             options.rank_tol = rank_tol;
             options.num_threads = num_threads;
             py::gil_scoped_release release;
             return new MatchEngine(gram, n_x, n_samples, options);
           }),
           py::arg("gram"), py::arg("n_x"), py::arg("n_samples"), py::arg("dead_tol"),
           py::arg("rank_tol"), py::arg("num_threads"))
      .def_property_readonly("rank_tol", &MatchEngine::rank_tol)
      .def_property_readonly("dead",
                             [](const MatchEngine& e) {
                               const auto& d = e.dead();
                               py::array_t<bool> out(static_cast<py::ssize_t>(d.size()));
                               auto o = out.mutable_unchecked<1>();
                               for (std::size_t i = 0; i < d.size(); ++i) {
                                 o(static_cast<py::ssize_t>(i)) = d[i] != 0;
                               }
                               return out;
                             })
      .def("ratios", &MatchEngine::ratios, py::call_guard<py::gil_scoped_release>())
      .def("thresholds", &MatchEngine::thresholds, py::call_guard<py::gil_scoped_release>())
      .def(
          "max_match",
          [](const MatchEngine& e, const std::vector<double>& eps) {
            std::vector<std::vector<char>> masks;
            {
              py::gil_scoped_release release;
              masks = e.max_match(eps);
            }
            py::array_t<bool> out({static_cast<py::ssize_t>(eps.size()), static_cast<py::ssize_t>(e.n())});
            auto o = out.mutable_unchecked<2>();
            for (std::size_t i = 0; i < masks.size(); ++i) {
              for (Index v = 0; v < e.n(); ++v) {
                o(static_cast<py::ssize_t>(i), v) = masks[i][static_cast<std::size_t>(v)] != 0;
              }
            }
            return out;
          },
          py::arg("eps"));
}

}  // namespace nsm::bindings
