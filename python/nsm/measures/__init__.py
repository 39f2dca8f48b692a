"""The standard representation-similarity measures of two layers, exact from one Gram.

Every measure here depends on the activations only through the float64 Gram matrix
``G = [X Y]ᵀ[X Y]``, its column sums ``s`` and the number of samples ``d``, so it comes from the
same single streaming pass as the maximum match, on all the data. The feature-space measures
centre the activations from those sums, ``Gc = G - s sᵀ / d``, never with a second pass.

Each function takes ``(X, Y)`` (samples × neurons, as :func:`nsm.max_match` takes them) or one
:class:`nsm.Gram`, and returns a float. A layer with no variance (every neuron dead or
constant) gives NaN with an :class:`nsm.NsmWarning` naming it.

With jackknife groups (``groups=K``, or a Gram built with groups) each returns an
:class:`nsm.Estimate` ``(value, se, low, high)`` instead: the value on all samples, its
jackknife standard error over the K leave-one-group-out Grams and the 95% normal interval
(docs/method.md, "Error bars"). Memory K + 1 Grams; the measure is computed K + 1 times.

Rank decisions (which directions of a layer carry variance) use the cutoff of docs/method.md ("Numerics") on
the centred block scaled by each neuron's uncentred norm, ``Ĉ = D Gc D`` with
``D = diag(G)^-1/2``: an eigenvalue counts when it exceeds
``eps_machine * max(d, n) * max(1, λ_max(Ĉ))``. Dead, constant and duplicated neurons add
nothing, whatever their scale.
"""

from __future__ import annotations

from .auc import match_auc
from .centered import (
    REGISTRY,
    CenteredMeasure,
    GramBlocks,
    Notes,
    Range,
    SharedCentering,
    centered_measures,
    family,
)
from .standard import cca, linear_cka, procrustes, svcca

__all__ = [
    "MEASURES",
    "REGISTRY",
    "CenteredMeasure",
    "GramBlocks",
    "Notes",
    "Range",
    "SharedCentering",
    "cca",
    "centered_measures",
    "family",
    "linear_cka",
    "match_auc",
    "procrustes",
    "svcca",
]

#: The measures' names, as :meth:`nsm.CrossComparison.matrix` takes them.
MEASURES = ("linear_cka", "cca", "svcca", "procrustes", "match_auc")
