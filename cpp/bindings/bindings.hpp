#pragma once
// The one include point of the binding files: pybind11 with every type caster the bindings use
// (included the same way in every file, so that no type converts differently in two of them),
// the aliases, the helpers they share and one bind_<topic> function per file.

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstddef>
#include <vector>

#include "nsm/dense.hpp"
#include "nsm/interrupt.hpp"

namespace nsm::bindings {

namespace py = pybind11;

/// A mask of n neurons (one char per neuron, nonzero = in) as a 1-D bool array of n entries.
inline py::array_t<bool> to_mask(const std::vector<char>& mask) {
  py::array_t<bool> out(static_cast<py::ssize_t>(mask.size()));
  auto o = out.mutable_unchecked<1>();
  for (std::size_t i = 0; i < mask.size(); ++i) o(static_cast<py::ssize_t>(i)) = mask[i] != 0;
  return out;
}

/// Masks of n neurons each, one per row, as a (masks.size(), n) bool array (n is given so that
/// no masks still have a shape).
inline py::array_t<bool> to_mask(const std::vector<std::vector<char>>& masks, Index n) {
  py::array_t<bool> out({static_cast<py::ssize_t>(masks.size()), static_cast<py::ssize_t>(n)});
  auto o = out.mutable_unchecked<2>();
  for (std::size_t i = 0; i < masks.size(); ++i) {
    for (Index v = 0; v < n; ++v) {
      o(static_cast<py::ssize_t>(i), v) = masks[i][static_cast<std::size_t>(v)] != 0;
    }
  }
  return out;
}

/// The stop check of core calls run without the GIL: takes the GIL briefly and lets Python run
/// the handlers of signals that arrived (Ctrl-C raises KeyboardInterrupt there); true when one
/// raised, the error then being set. Off the main thread Python runs no handlers: never true.
inline StopCheck python_signals() {
  return []() {
    py::gil_scoped_acquire acquire;
    return PyErr_CheckSignals() != 0;
  };
}

/// Runs body(python_signals()) with the GIL released; if the core stops with Interrupted,
/// raises the Python error the signal handler set (KeyboardInterrupt for Ctrl-C).
template <class Body>
void interruptible(Body&& body) {
  bool interrupted = false;
  {
    py::gil_scoped_release release;
    try {
      body(python_signals());
    } catch (const Interrupted&) {
      interrupted = true;
    }
  }
  if (interrupted) throw py::error_already_set();
}

// Each binds its topic's public names into m (nsm._core) and its test hooks into testing
// (nsm._core._testing: switches, counters and step-by-step drivers for tests and benchmarks).
void bind_gram(py::module_& m, py::module_& testing);
void bind_match(py::module_& m, py::module_& testing);
void bind_minimal(py::module_& m);

}  // namespace nsm::bindings
