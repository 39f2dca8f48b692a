"""The results of a comparison and their files: :class:`LayerComparison` (one pair of layers),
:class:`Comparison` (layer by layer, from :func:`nsm.torch.compare`) and
:class:`CrossComparison` (every site against every site, from :func:`nsm.torch.compare_all`).
Their tables are in :mod:`nsm.results.tables`, their JSON formats and saved Grams in
:mod:`nsm.results.io`."""

from __future__ import annotations

from .comparison import DEFAULT_EPS, Comparison, LayerComparison
from .cross import MATRIX_MEASURES, CrossComparison, SharedGrams

__all__ = [
    "DEFAULT_EPS",
    "MATRIX_MEASURES",
    "Comparison",
    "CrossComparison",
    "LayerComparison",
    "SharedGrams",
]
