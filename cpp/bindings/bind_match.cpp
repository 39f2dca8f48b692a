#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "nsm/match_engine.hpp"
#include "nsm/peeler.hpp"
#include "nsm/span_basis.hpp"

namespace nsm::bindings {

void bind_match(py::module_& m, py::module_& testing) {
  py::class_<MatchEngine>(m, "MatchEngine")
      .def(py::init([](const py::array& gram, Index n_x, std::int64_t n_samples, double dead_tol,
                       double rank_tol, int num_threads) {
             // The Gram is symmetric, so a C-order float64 array is read in place as well as a
             // Fortran-order one; anything else is converted once. The engine keeps the array.
             py::array g = gram;
             const bool in_place = g.dtype().is(py::dtype::of<double>()) && g.ndim() == 2 &&
                                   (g.flags() & (py::array::c_style | py::array::f_style)) != 0;
             if (!in_place)
               g = py::array_t<double, py::array::f_style | py::array::forcecast>::ensure(gram);
             if (!g || g.ndim() != 2 || g.shape(0) != g.shape(1)) {
               throw std::invalid_argument("gram must be a square 2-D float64 array");
             }
             const auto n = static_cast<Index>(g.shape(0));
             const auto* data = static_cast<const double*>(g.data());
             std::shared_ptr<const void> owner(new py::object(g), [](const void* p) {
               py::gil_scoped_acquire gil;
               delete static_cast<const py::object*>(p);
             });
             MatchOptions options;
             options.dead_tol = dead_tol;
             options.rank_tol = rank_tol;
             options.num_threads = num_threads;
             py::gil_scoped_release release;
             return new MatchEngine(data, n, n, n_x, n_samples, options, std::move(owner));
           }),
           py::arg("gram"), py::arg("n_x"), py::arg("n_samples"), py::arg("dead_tol"),
           py::arg("rank_tol"), py::arg("num_threads"))
      .def_property_readonly("rank_tol", &MatchEngine::rank_tol)
      .def_property_readonly("dead", [](const MatchEngine& e) { return to_mask(e.dead()); })
      .def("ratios", &MatchEngine::ratios, py::call_guard<py::gil_scoped_release>())
      // Ctrl-C: both ask between peeling rounds, about every 50 ms.
      .def("thresholds",
           [](const MatchEngine& e) {
             Eigen::VectorXd t;
             interruptible([&](const StopCheck& stop) { t = e.thresholds(stop); });
             return t;
           })
      .def(
          "max_match",
          [](const MatchEngine& e, const std::vector<double>& eps) {
            std::vector<std::vector<char>> masks;
            interruptible([&](const StopCheck& stop) { masks = e.max_match(eps, stop); });
            return to_mask(masks, e.n());
          },
          py::arg("eps"));

  // The engine's size rule, which schedules pairs side by side (nsm.cross).
  m.def("engine_threads", &engine_threads, py::arg("n"), py::arg("requested"),
        "The threads an engine over n neurons uses when `requested` are asked for.");

  // Hooks for the tests of the engine's inner paths (tests/test_engine_paths.py).
  testing.def("engine_counters", []() {
    const EngineCounters c = engine_counters();
    py::dict d;
    d["rebuilds"] = c.rebuilds;
    d["downdates"] = c.downdates;
    d["parallel_sweeps"] = c.parallel_sweeps;
    d["promotions"] = c.promotions;
    d["rollbacks"] = c.rollbacks;
    return d;
  });
  testing.def("reset_engine_counters", &reset_engine_counters);
  // The engine's neurons per thread (tests lower it to reach the threaded paths on small layers).
  testing.def("engine_neurons_per_thread", &engine_neurons_per_thread);
  testing.def("set_engine_neurons_per_thread", &set_engine_neurons_per_thread, py::arg("neurons"));
  testing.def(
      "set_engine_paths",
      [](const std::string& refactor, bool parallel_sweeps) {
        EnginePaths p;
        if (refactor == "automatic") {
          p.refactor = Refactor::automatic;
        } else if (refactor == "downdate") {
          p.refactor = Refactor::downdate;
        } else if (refactor == "rebuild") {
          p.refactor = Refactor::rebuild;
        } else {
          throw std::invalid_argument("refactor must be 'automatic', 'downdate' or 'rebuild', got '" +
                                      refactor + "'");
        }
        p.parallel_sweeps = parallel_sweeps;
        set_engine_paths(p);
      },
      py::arg("refactor") = "automatic", py::arg("parallel_sweeps") = false);

  // A peeling driven step by step from Python (tests only): remove neurons, run trials, read
  // the ratios and each layer's factor. first_order: how the first factors are ordered, as
  // several eps (and thresholds) order them ("exact") or as one eps does ("bound").
  py::class_<Peeler>(testing, "Peeler")
      .def(py::init([](const MatchEngine& e, const std::string& first_order) {
             if (first_order != "exact" && first_order != "bound") {
               throw std::invalid_argument("first_order must be 'exact' or 'bound', got '" +
                                           first_order + "'");
             }
             py::gil_scoped_release release;
             return new Peeler(e.cosine(), e.n_x(), e.dead(), e.rank_tol(), {},
                               first_order == "exact" ? FirstOrder::exact : FirstOrder::bound);
           }),
           py::arg("engine"), py::arg("first_order") = "exact", py::keep_alive<1, 2>())
      .def("remove", &Peeler::remove, py::arg("neurons"))
      .def("ratios",
           [](const Peeler& p) {
             Eigen::VectorXd r = Eigen::VectorXd::Constant(p.n(), std::nan(""));
             for (Index v = 0; v < p.n(); ++v) {
               if (p.in(v)) r[v] = p.ratio(v);
             }
             return r;
           })
      .def("begin_trial", &Peeler::begin_trial)
      .def("commit_trial", &Peeler::commit_trial)
      .def("rollback_trial", &Peeler::rollback_trial)
      .def(
          "factor",
          [](const Peeler& p, int side) {
            if (side != 0 && side != 1) throw std::invalid_argument("side must be 0 or 1");
            const SpanBasis& s = p.span(side);
            return py::make_tuple(s.basis(), s.tracked(), s.coordinates(),
                                  Eigen::VectorXd(s.residuals()));
          },
          py::arg("side"));
}

}  // namespace nsm::bindings
