"""nsm's warnings are emitted once, at the user's line, and library code never touches the
process's warning filters (nsm._diagnostics)."""

from __future__ import annotations

import ast
import pathlib
import threading
import warnings

import numpy as np
import pytest

import nsm
from nsm import _diagnostics

PACKAGE = pathlib.Path(nsm.__file__).parent


def test_no_library_module_changes_the_warning_filters():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in (
                "catch_warnings",
                "simplefilter",
                "filterwarnings",
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "showwarning":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} showwarning")
    assert offenders == []


def starved_layers() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((6, 4)), rng.random((6, 4))


def test_two_threads_computing_ratios_leave_the_few_samples_warning_on():
    # ratios() silenced FewSamplesWarning with warnings.catch_warnings, which is process-wide:
    # two threads entering and leaving it out of order left "ignore" in the filters for good.
    X, Y = starved_layers()
    gram = nsm.Gram.from_arrays(X, Y)
    before = list(warnings.filters)

    def work() -> None:
        for _ in range(300):
            nsm.ratios(gram)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(warnings.filters) == before
    with pytest.warns(nsm.FewSamplesWarning):
        nsm.match_thresholds(gram)


def test_a_warning_found_deep_inside_points_at_the_callers_line():
    X, Y = starved_layers()
    with pytest.warns(nsm.FewSamplesWarning) as caught:
        nsm.match_thresholds(X, Y)
    assert [pathlib.Path(w.filename).name for w in caught] == ["test_diagnostics.py"]


def test_collect_keeps_warnings_as_data_and_only_in_its_own_thread():
    X, Y = starved_layers()
    seen: list[list] = []

    def other_thread() -> None:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            nsm.match_thresholds(X, Y)
        seen.append([w.category for w in got])

    with _diagnostics.collect() as notes:
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        nsm.match_thresholds(X, Y)  # kept as data here, not warned
    assert [c for _, c in notes] == [nsm.FewSamplesWarning]
    assert seen == [[nsm.FewSamplesWarning]]  # the other thread warned as usual
