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
from ._kernels import kernel_name
from .exceptions import FewSamplesWarning, NsmWarning
from .gram import Gram
from .jackknife import Estimate
from .match import MatchResult, Ratios, max_match, ratios
from .results import Comparison, CrossComparison, LayerComparison
from .simple import SimpleMatch, SimpleMatches, minimal_match, simple_matches
from .thresholds import Curve, Thresholds, match_thresholds

try:
    # The one version source is pyproject.toml; an installed (or editable) copy carries it.
    __version__: str = _metadata.version("neuron-subspace-match")
except _metadata.PackageNotFoundError:  # pragma: no cover - only when run from an uninstalled tree
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # nsm.torch and nsm.compare import torch, so only when first used.
    if name == "torch":
        import importlib

        return importlib.import_module("nsm.torch")
    if name == "compare":
        from .torch import compare

        return compare
    raise AttributeError(f"module 'nsm' has no attribute {name!r}")


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
