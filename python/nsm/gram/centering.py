"""The centred Gram: each neuron's mean over the samples removed, from the column sums alone
(docs/method.md, "The centred match")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import _core

if TYPE_CHECKING:
    from .gram import Gram

__all__ = ["centered_matrix", "constant_cutoff", "rank_cutoff"]

_EPS = np.finfo(np.float64).eps
# As in nsm.measures: float32 products over blocks of 2,048 rows round at about
# 2^-24 * sqrt(2048) of each (scaled) entry; a direction below ten times that is rounding.
_MIXED_TOL = 10 * 2.0**-24 * np.sqrt(_core.MIXED_BLOCK_ROWS)


def constant_cutoff(gram: Gram) -> float:
    """The cutoff on ``Gc_vv / G_vv`` (a neuron's sin² against the constant vector) at or below
    which a neuron counts as constant over the samples: the engine's rank cutoff
    ``eps_machine * max(n_samples, n)``, or the mixed pass's rounding for a mixed Gram. The
    standard measures (:mod:`nsm.measures`) cut ranks at the same value.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.gram import constant_cutoff
    >>> g = nsm.Gram.from_arrays(np.ones((1000, 2)), np.ones((1000, 1)))
    >>> bool(np.isclose(constant_cutoff(g), 1000 * np.finfo(float).eps))
    True
    """
    return gram.rounding_floor


def rank_cutoff(n_samples: int, n: int, precision: str) -> float:
    """:func:`constant_cutoff` of a Gram of ``n`` neurons over ``n_samples`` samples made by the
    ``precision`` pass (for a pair of layers cut out of a larger Gram).

    Examples
    --------
    >>> from nsm.gram import rank_cutoff
    >>> bool(rank_cutoff(10, 1000, "float64") == 1000 * 2.0**-52)
    True
    """
    tol = _EPS * max(n_samples, n)
    return max(tol, _MIXED_TOL) if precision == "mixed" else tol


def centered_matrix(gram: Gram) -> np.ndarray:
    """``Gc = G - s sᵀ / n_samples``: the Gram of the activations with each neuron's mean over
    the samples removed, where ``s`` are the Gram's column sums (no second pass over the data).

    A neuron whose centred squared norm is at most :func:`constant_cutoff` times its uncentred
    one is constant over the samples up to rounding (the subtraction cancels for a neuron with
    a large mean and a tiny variance): its row and column are set to 0, so that the engine
    counts it dead, and rounding never makes a live neuron or a negative diagonal.

    Parameters
    ----------
    gram : Gram
        A Gram with samples and its column sums. A Gram made by :meth:`Gram.from_matrix`
        without ``column_sums`` (or merged from one) raises ValueError: its sums are unknown.

    Returns
    -------
    ndarray of shape (n, n), float64, symmetric (a new array).

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.gram import centered_matrix
    >>> X = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    >>> centered_matrix(nsm.Gram.from_arrays(X, X[:, :1])).round(12).tolist()
    [[2.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 2.0]]
    """
    parts = gram.parts(groups=False)
    matrix, sums, n_samples = parts.matrix, parts.column_sums, parts.n_samples
    if n_samples == 0:
        raise ValueError("gram has no samples: update it with activations first")
    if not parts.sums_known:
        raise ValueError(
            "centered=True needs the Gram's column sums, and this Gram was made by "
            "Gram.from_matrix without column_sums=: pass column_sums= to from_matrix (if the "
            "activations are already centred, centered=False gives the same match)"
        )
    diag = np.diag(matrix)
    out = matrix - np.outer(sums, sums) / n_samples
    out = (out + out.T) / 2  # the core reads one triangle; keep both equal
    centered_diag = np.diag(out)
    # ~(a > b) also catches NaN and G_vv = 0
    constant = ~(centered_diag > rank_cutoff(n_samples, parts.n, parts.precision) * diag)
    out[constant, :] = 0.0
    out[:, constant] = 0.0
    return out
