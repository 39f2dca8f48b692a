"""The committed stubs of the compiled core (python/nsm/_core/: the module and its _testing
submodule, which pybind11-stubgen writes as a package) match the built module."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

STUBS = pathlib.Path(__file__).resolve().parents[1] / "python" / "nsm" / "_core"


def test_core_stubs_have_not_drifted(tmp_path):
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen is in the test extra")
    subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "nsm._core", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = tmp_path / "nsm" / "_core"
    stale = (
        "python/nsm/_core/ is stale: regenerate it with `pybind11-stubgen nsm._core -o /tmp/stubs "
        "&& rm -r python/nsm/_core && cp -r /tmp/stubs/nsm/_core python/nsm/`"
    )
    names = sorted(p.name for p in generated.glob("*.pyi"))
    assert names == sorted(p.name for p in STUBS.glob("*.pyi")), stale
    assert "__init__.pyi" in names, stale
    for name in names:
        assert (generated / name).read_text() == (STUBS / name).read_text(), stale
