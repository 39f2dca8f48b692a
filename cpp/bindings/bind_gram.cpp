#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "nsm/gram.hpp"

namespace nsm::bindings {
namespace {

// A 2-D array (samples, neurons), or a 3-D channels-first array (N, C, P) read as N * P
// samples of C neurons without a copy (nsm.torch passes convolution outputs this way).
template <class T>
MatrixView<T> view_of(const py::array& a, const char* name) {
  if (a.ndim() != 2 && a.ndim() != 3) {
    throw std::invalid_argument(std::string(name) + " must be 2-D, got " + std::to_string(a.ndim()) +
                                "-D");
  }
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.strides(d) % item != 0) {
      throw std::invalid_argument(std::string(name) +
                                  " has strides that are not a multiple of its item size");
    }
  }
  MatrixView<T> v;
  v.data = static_cast<const T*>(a.data());
  if (a.ndim() == 2) {
    v.rows = a.shape(0);
    v.cols = a.shape(1);
    v.row_stride = a.strides(0) / item;
    v.col_stride = a.strides(1) / item;
  } else {
    v.rows = a.shape(0) * a.shape(2);
    v.cols = a.shape(1);
    v.inner = a.shape(2);
    v.outer_stride = a.strides(0) / item;
    v.row_stride = a.strides(2) / item;
    v.col_stride = a.strides(1) / item;
  }
  return v;
}

enum class Kind { f32, f64 };

// By equality, not identity: an array that went through pickle (multiprocessing, many data
// loaders) carries its own float64 dtype object.
Kind kind_of(const py::array& a, const char* name) {
  if (py::isinstance<py::array_t<float>>(a)) return Kind::f32;  // numpy's PyArray_EquivTypes
  if (py::isinstance<py::array_t<double>>(a)) return Kind::f64;
  throw py::type_error(std::string(name) + " must be float32 or float64 here, got " +
                       std::string(py::str(a.dtype())));
}

Precision precision_of(const std::string& name) {
  if (name == "float64") return Precision::float64;
  if (name == "mixed") return Precision::mixed;
  throw std::invalid_argument("precision must be 'float64' or 'mixed', got '" + name + "'");
}

template <class TX>
void update_with(GramAccumulator& g, const MatrixView<TX>& x, const py::array& y, Kind ky, int threads,
                 Precision precision) {
  // Ctrl-C: the update asks between row blocks, about every 50 ms, and leaves g unchanged.
  if (ky == Kind::f32) {
    const auto yv = view_of<float>(y, "Y");
    interruptible([&](const StopCheck& stop) { g.update(x, yv, threads, precision, stop); });
  } else {
    const auto yv = view_of<double>(y, "Y");
    interruptible([&](const StopCheck& stop) { g.update(x, yv, threads, precision, stop); });
  }
}

}  // namespace

void bind_gram(py::module_& m, py::module_& testing) {
  m.def("kernel_name", &kernel_name, "The dense kernel set chosen for this CPU.");
  testing.def("set_kernels", &set_kernels, py::arg("name"),
              "Force a dense kernel set by name ('' restores the automatic choice).");
  // The mixed pass's constants, read by the Python passes that follow the same rule.
  m.attr("MIXED_BLOCK_ROWS") = kDefaultMixedRows;
  m.attr("MIXED_MAX_ABS") = kMixedMaxAbs;
  m.attr("MIXED_MIN_ABS") = kMixedMinAbs;

  py::class_<GramAccumulator>(m, "GramAccumulator")
      .def(py::init<Index, Index>(), py::arg("n_x"), py::arg("n_y"))
      .def(
          "update",
          [](GramAccumulator& g, const py::array& x, const py::array& y, int threads,
             const std::string& precision) {
            const Kind kx = kind_of(x, "X");
            const Kind ky = kind_of(y, "Y");
            const Precision p = precision_of(precision);
            if (kx == Kind::f32) {
              update_with(g, view_of<float>(x, "X"), y, ky, threads, p);
            } else {
              update_with(g, view_of<double>(x, "X"), y, ky, threads, p);
            }
          },
          py::arg("x"), py::arg("y"), py::arg("num_threads"), py::arg("precision") = "float64")
      // The accumulator locks itself; waiting for a lock (an update running in another
      // thread) must not hold the GIL.
      .def("merge", &GramAccumulator::merge, py::arg("other"), py::call_guard<py::gil_scoped_release>())
      .def("assign", &GramAccumulator::assign, py::arg("gram"), py::arg("column_sums"),
           py::arg("n_samples"), py::call_guard<py::gil_scoped_release>())
      .def("matrix", &GramAccumulator::matrix, py::call_guard<py::gil_scoped_release>())
      .def("column_sums", &GramAccumulator::column_sums, py::call_guard<py::gil_scoped_release>())
      .def(
          "state",
          [](const GramAccumulator& g) {
            GramState s;
            {
              py::gil_scoped_release release;
              s = g.state();
            }
            return py::make_tuple(std::move(s.matrix), std::move(s.sums), s.n_samples);
          },
          "(matrix, column_sums, n_samples) taken together, between two whole updates.")
      .def_property_readonly("n_samples", py::cpp_function(&GramAccumulator::n_samples,
                                                           py::call_guard<py::gil_scoped_release>()))
      .def_property_readonly("n_x", &GramAccumulator::n_x)
      .def_property_readonly("n_y", &GramAccumulator::n_y)
      .def_static("block_rows", &GramAccumulator::block_rows, py::arg("n"));
  // The mixed pass's block length, for the accuracy study (bench/bench_gram_precision.py).
  testing.def("mixed_block_rows", &mixed_block_rows);
  testing.def("set_mixed_block_rows", &set_mixed_block_rows, py::arg("rows"));
}

}  // namespace nsm::bindings
