"""The standard measures of two layers, exact from one Gram: linear CKA, CCA, SVCCA and
Procrustes (the registry's centred measures, with their jackknife)."""

from __future__ import annotations

from typing import Any

from .._validation import check_keep, check_layer_names
from ..gram import Gram
from ..jackknife import Estimate, estimate, quiet_leave_out
from ..match.inputs import resolve_gram
from .centered import centered_measures


def _gram_of(X: Any, Y: Any, function: str, num_threads: int | None, groups: Any = None) -> Gram:
    """The Gram a measure works on (:func:`nsm.match.inputs.resolve_gram`): arrays take the
    float64 pass, whose rounding the measures' rank decisions need."""
    gram = resolve_gram(function, X, Y, num_threads=num_threads, groups=groups, precision="float64")
    if gram.n_samples == 0:
        raise ValueError("gram has no samples: update it with activations first")
    return gram


def _jackknifed(gram: Gram, function: str, value: float, compute: Any) -> float | Estimate:
    """``value`` (``compute(gram)``), and with groups its :class:`nsm.Estimate` over the
    leave-one-out Grams."""
    if gram.groups is None:
        return value
    return estimate(value, quiet_leave_out(compute, gram.leave_one_out()), function)


def _public_measure(
    name: str, X: Any, Y: Any, names: Any, num_threads: int | None, groups: Any, keep: float = 0.99
) -> float | Estimate:
    """What every public centred measure does: the Gram of ``(X, Y)`` (or ``X`` itself), the
    measure, and with groups its jackknife."""
    gram = _gram_of(X, Y, name, num_threads, groups)
    names = check_layer_names(names)

    def compute(g: Gram) -> float:
        return centered_measures(g, (name,), keep, names)[name]

    return _jackknifed(gram, name, compute(gram), compute)


def linear_cka(
    X: Any,
    Y: Any = None,
    /,
    *,
    names: tuple[str, str] = ("X", "Y"),
    num_threads: int | None = None,
    groups: int | None = None,
) -> float | Estimate:
    """Linear centred kernel alignment (Kornblith, Norouzi, Lee and Hinton, ICML 2019).

    ``‖XcᵀYc‖²_F / (‖XcᵀXc‖_F ‖YcᵀYc‖_F)`` with ``Xc``, ``Yc`` the column-centred activations:
    the similarity of the two layers' centred sample-by-sample linear kernels. It is invariant
    to orthogonal transforms and isotropic scaling of either layer, but not to arbitrary
    invertible ones, and it is dominated by the directions of largest variance. Computed
    exactly from the Gram on all samples (minibatch CKA estimates it).

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations (as for :func:`nsm.max_match`); or instead one :class:`nsm.Gram`.
    names : (str, str)
        The layers' names, used in warnings.
    num_threads : int, optional
        Threads for the Gram of arrays.
    groups : int >= 2, optional
        Jackknife error bars over ``groups`` contiguous blocks of rows (memory ``groups`` + 1
        Grams); a Gram built with groups gives them without this argument.

    Returns
    -------
    float in [0, 1]; NaN (with an NsmWarning) when a layer has no variance. With groups, an
    :class:`nsm.Estimate` ``(value, se, low, high)``.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 8))
    >>> round(nsm.measures.linear_cka(X, 3 * X @ np.linalg.qr(rng.standard_normal((8, 8)))[0] + 5), 12)
    1.0
    >>> g = nsm.Gram.from_arrays(X, rng.standard_normal((1000, 4)))
    >>> nsm.measures.linear_cka(g) < 0.05
    True
    >>> e = nsm.measures.linear_cka(X, X + rng.standard_normal((1000, 8)), groups=10)
    >>> bool(e.low < e.value < e.high), bool(0 < e.se < 0.05)
    (True, True)
    """
    return _public_measure("linear_cka", X, Y, names, num_threads, groups)


def cca(
    X: Any,
    Y: Any = None,
    /,
    *,
    names: tuple[str, str] = ("X", "Y"),
    num_threads: int | None = None,
    groups: int | None = None,
) -> float | Estimate:
    """Mean squared canonical correlation, R²_CCA (Hotelling 1936; as compared in Kornblith et
    al., ICML 2019).

    The canonical correlations ``ρ_1 >= ρ_2 >= ...`` of the centred activations are the cosines
    of the principal angles between the column spans of ``Xc`` and ``Yc``; this returns
    ``Σ ρ_i² / min(rank Xc, rank Yc)``. It is invariant to any invertible linear transform of
    either layer, so it weighs a direction of tiny variance as much as the main ones. Ranks come
    from the cutoff described in the module docstring: dead, constant and duplicated neurons add
    no direction.

    Parameters
    ----------
    X, Y, names, num_threads, groups
        As for :func:`linear_cka`.

    Returns
    -------
    float in [0, 1]; NaN (with an NsmWarning) when a layer has no variance. Warns
    (FewSamplesWarning) when ``n_samples <= n_x + n_y``.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 6))
    >>> Y = np.hstack([X[:, :3] @ rng.standard_normal((3, 3)), rng.standard_normal((1000, 3))])
    >>> round(nsm.measures.cca(X, Y), 2)  # three shared directions out of six
    0.5
    """
    return _public_measure("cca", X, Y, names, num_threads, groups)


def svcca(
    X: Any,
    Y: Any = None,
    /,
    *,
    keep: float = 0.99,
    names: tuple[str, str] = ("X", "Y"),
    num_threads: int | None = None,
    groups: int | None = None,
) -> float | Estimate:
    """Singular vector CCA (Raghu, Gilmer, Yosinski and Sohl-Dickstein, NeurIPS 2017).

    Keep on each side the fewest principal directions of the centred covariance ``XcᵀXc`` that
    explain at least ``keep`` of its variance (its trace), then return the mean canonical
    correlation between the kept parts, ``Σ ρ_i / min(k_x, k_y)``. Dropping the low-variance
    directions makes it less sensitive than :func:`cca` to noise, but it depends on the scale
    of each neuron (PCA does).

    Parameters
    ----------
    X, Y, names, num_threads, groups
        As for :func:`linear_cka`.
    keep : float in (0, 1]
        Fraction of each layer's variance the kept directions must explain (default 0.99).

    Returns
    -------
    float in [0, 1]; NaN (with an NsmWarning) when a layer has no variance. Warns
    (FewSamplesWarning) when ``n_samples <= n_x + n_y``.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 5)) * [10, 10, 10, 0.01, 0.01]  # two directions are noise
    >>> Y = X[:, :3] @ rng.standard_normal((3, 3))
    >>> round(nsm.measures.svcca(X, Y), 6)
    1.0
    """
    keep = check_keep(keep)
    return _public_measure("svcca", X, Y, names, num_threads, groups, keep)


def procrustes(
    X: Any,
    Y: Any = None,
    /,
    *,
    names: tuple[str, str] = ("X", "Y"),
    num_threads: int | None = None,
    groups: int | None = None,
) -> float | Estimate:
    """Cosine of the angular Procrustes distance (Williams, Kunz, Kornblith and Linderman,
    NeurIPS 2021; orthogonal Procrustes, Schönemann 1966).

    ``‖XcᵀYc‖_* / (‖Xc‖_F ‖Yc‖_F)`` (``‖·‖_*`` the nuclear norm): the largest cosine between
    ``Xc`` and ``Yc Q`` over all orthogonal maps ``Q`` (the narrower layer padded with zero
    neurons). ``arccos`` of it is a metric on shapes of representations; it is invariant to
    rotations and isotropic scaling.

    Parameters
    ----------
    X, Y, names, num_threads, groups
        As for :func:`linear_cka`.

    Returns
    -------
    float in [0, 1]; NaN (with an NsmWarning) when a layer has no variance.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 4))
    >>> Q = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    >>> round(nsm.measures.procrustes(X, 2 * X @ Q - 1), 12)
    1.0
    """
    return _public_measure("procrustes", X, Y, names, num_threads, groups)
