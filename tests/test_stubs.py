"""The committed stubs of the compiled core (python/nsm/_core.pyi) match the built module."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

STUBS = pathlib.Path(__file__).resolve().parents[1] / "python" / "nsm" / "_core.pyi"


def test_core_stubs_have_not_drifted(tmp_path):
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen is in the test extra")
    subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "nsm._core", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = (tmp_path / "nsm" / "_core.pyi").read_text()
    assert generated == STUBS.read_text(), (
        "python/nsm/_core.pyi is stale: regenerate it with "
        "`pybind11-stubgen nsm._core -o /tmp/stubs && cp /tmp/stubs/nsm/_core.pyi python/nsm/`"
    )
