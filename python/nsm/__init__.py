"""nsm: neuron activation subspace match (Wang et al., NeurIPS 2018).

Do two networks learn the same representation? For a layer of network A and a layer of
network B, nsm finds the maximum match: the largest sets of neurons whose activation vectors
span each other up to a relative error ε.

>>> import numpy as np, nsm
>>> rng = np.random.default_rng(0)
>>> X = np.maximum(rng.standard_normal((2000, 16)), 0)
>>> nsm.max_match(X, X[:, ::-1], 0.1).similarity
1.0
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    from . import _core  # noqa: F401
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "nsm's compiled core (nsm._core) is missing or failed to load: reinstall with "
        "`pip install neuron-subspace-match` (or `pip install .` from a checkout), which needs "
        f"a C++17 compiler. Original error: {exc}"
    ) from exc

from . import measures
from ._diagnostics import FewSamplesWarning, NsmWarning
from ._kernels import kernel_name
from .gram import Gram
from .jackknife import Estimate
from .match import (
    Curve,
    MatchResult,
    Ratios,
    SimpleMatch,
    SimpleMatches,
    Thresholds,
    match_thresholds,
    max_match,
    minimal_match,
    ratios,
    simple_matches,
)
from .results import Comparison, CrossComparison, LayerComparison

try:
    # The one version source is pyproject.toml; an installed (or editable) copy carries it.
    __version__: str = _metadata.version("neuron-subspace-match")
except _metadata.PackageNotFoundError:  # pragma: no cover - only when run from an uninstalled tree
    __version__ = "0+unknown"


# Imported when first used: nsm.torch imports torch, nsm.plot matplotlib's users.
_LAZY = ("plot", "torch")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"nsm.{name}")
    raise AttributeError(f"module 'nsm' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public names only (boost-histogram's habit): internals stay out of completion.
    return sorted({*__all__, *_LAZY})


__all__ = [
    "Comparison",
    "CrossComparison",
    "Curve",
    "Estimate",
    "FewSamplesWarning",
    "Gram",
    "LayerComparison",
    "MatchResult",
    "NsmWarning",
    "Ratios",
    "SimpleMatch",
    "SimpleMatches",
    "Thresholds",
    "__version__",
    "kernel_name",
    "match_thresholds",
    "max_match",
    "measures",
    "minimal_match",
    "ratios",
    "simple_matches",
]
