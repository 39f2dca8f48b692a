"""Every public function's docstring example runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

import nsm

MODULES = [
    "nsm",
    "nsm._kernels",
    "nsm.gram.gram",
    "nsm.gram.parts",
    "nsm.gram.centering",
    "nsm.starved",
    "nsm.match.maximum",
    "nsm.match.thresholds",
    "nsm.match.simple",
    "nsm.match.inputs",
    "nsm.measures.centered",
    "nsm.measures.standard",
    "nsm.measures.auc",
    "nsm.jackknife",
    "nsm.results.cross",
    "nsm.results.comparison",
    "nsm.results.tables",
    "nsm._files",
    "nsm.plot.labels",
    "nsm.plot.heatmap",
    "nsm.torch.compare",
    "nsm.torch.capture_context",
    "nsm.torch.grid",
    "nsm.plot.report",
    "nsm.demo",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    needs_torch = name.startswith("nsm.torch") or name in ("nsm.plot.report", "nsm.demo")
    if needs_torch and importlib.util.find_spec("torch") is None:
        pytest.skip("the torch extra is not installed")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0


def test_every_public_name_has_an_example():
    for name in nsm.__all__:
        obj = getattr(nsm, name)
        if name.startswith("__") or isinstance(obj, type) and issubclass(obj, Warning):
            continue
        doc = obj.__doc__ or ""
        if callable(obj) and not isinstance(obj, type):
            assert ">>>" in doc, f"nsm.{name} has no example in its docstring"
