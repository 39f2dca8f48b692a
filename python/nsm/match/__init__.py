"""The engine stage: the maximum match (:func:`max_match`, :func:`ratios`), every neuron's
critical ε (:func:`match_thresholds`) and the simple matches (:func:`simple_matches`,
:func:`minimal_match`), on the C++ core or the torch engine (``engine=``), from a Gram or from
two layers' activations (:mod:`nsm.match.inputs`, the one resolver of "(X, Y) or a Gram")."""

from __future__ import annotations

from .maximum import MatchResult, Ratios, max_match, ratios
from .simple import SimpleMatch, SimpleMatches, minimal_match, simple_matches
from .thresholds import Curve, Thresholds, gram_thresholds, match_thresholds

__all__ = [
    "Curve",
    "MatchResult",
    "Ratios",
    "SimpleMatch",
    "SimpleMatches",
    "Thresholds",
    "gram_thresholds",
    "match_thresholds",
    "max_match",
    "minimal_match",
    "ratios",
    "simple_matches",
]
