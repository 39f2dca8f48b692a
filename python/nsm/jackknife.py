"""Error bars by the delete-a-group jackknife (docs/method.md, "Error bars").

The samples are dealt into K groups and a Gram is kept per group (:class:`nsm.Gram` with
``groups=K``); leaving group k out gives the Gram of the other samples, total minus group k, and
any statistic computed from it is the k-th leave-one-out estimate ``t_k``. From the K of them,
the jackknife standard error (Efron and Stein 1981; Efron and Tibshirani, "An Introduction to
the Bootstrap", ch. 11)

    se = sqrt((K - 1) / K * Σ_k (t_k - t̄)²),   t̄ = Σ_k t_k / K,

and the normal interval ``value ± z se`` around the full-data value, ``z`` the normal quantile
of ``(1 + level) / 2``. The jackknife's bias-corrected value ``K value - (K - 1) t̄`` removes
the O(1/n_samples) bias of a statistic; match statistics have such a bias (spans fitted on
fewer samples hold more of the noise), large next to their se (docs/method.md, "Error bars").
This module holds only that arithmetic; the Grams live in nsm.gram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

from . import _diagnostics
from .exceptions import NsmWarning

__all__ = ["DEFAULT_LEVEL", "Estimate", "bias_corrected", "estimate", "jackknife_se", "normal_interval"]

#: The coverage of the intervals that nsm's measures return.
DEFAULT_LEVEL = 0.95


class Estimate(NamedTuple):
    """A statistic on all the samples with its jackknife standard error and 95% normal
    interval ``value ± 1.96 se`` (what a measure returns when the Gram keeps groups).

    ``value`` is the statistic on all the samples (the same number as without groups), except
    for ``match_auc(..., correct_bias=True)``, where it is the jackknife's bias-corrected value;
    ``low`` and ``high`` are not clipped to the statistic's range.

    Examples
    --------
    >>> import nsm
    >>> e = nsm.Estimate(0.5, 0.01, 0.48, 0.52)
    >>> e.value, f"{e}"
    (0.5, '0.500 ± 0.010')
    """

    value: float
    se: float
    low: float
    high: float

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{format(self.value, spec)} ± {format(self.se, spec)}"


def check_level(level: Any) -> float:
    """A coverage in (0, 1), as a float."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating, np.integer)):
        raise TypeError(f"level must be a number in (0, 1), got {level!r}")
    value = float(level)
    if not 0.0 < value < 1.0:
        raise ValueError(f"level must be in (0, 1) (0.95 for a 95% interval), got {level!r}")
    return value


def jackknife_se(leave_out: Any) -> Any:
    """The jackknife standard error of the K leave-one-out estimates along axis 0.

    Parameters
    ----------
    leave_out : array-like of shape (K, ...)
        ``leave_out[k]`` is the statistic computed without group k; K >= 2.

    Returns
    -------
    float, or an array shaped like ``leave_out[0]``:
    ``sqrt((K - 1) / K * Σ_k (t_k - mean)²)``.

    Examples
    --------
    >>> from nsm.jackknife import jackknife_se
    >>> round(jackknife_se([1.0, 2.0, 3.0]), 6)  # sqrt(2/3 * 2)
    1.154701
    """
    t = np.asarray(leave_out, dtype=np.float64)
    if t.ndim == 0 or t.shape[0] < 2:
        raise ValueError(f"the jackknife needs at least 2 leave-one-out estimates, got shape {t.shape}")
    k = t.shape[0]
    se = np.sqrt((k - 1) / k * np.sum((t - t.mean(axis=0)) ** 2, axis=0))
    return float(se) if se.ndim == 0 else se


def bias_corrected(value: float, leave_out: Any) -> float:
    """The jackknife's bias-corrected value ``K value - (K - 1) mean(leave_out)``.

    Examples
    --------
    >>> from nsm.jackknife import bias_corrected
    >>> round(bias_corrected(0.5, [0.52, 0.52, 0.52, 0.52]), 12)  # each leave-out is 0.02 higher
    0.44
    """
    t = np.asarray(leave_out, dtype=np.float64)
    k = t.shape[0]
    return float(k * value - (k - 1) * t.mean())


def normal_interval(value: Any, se: Any, level: float = DEFAULT_LEVEL) -> tuple[Any, Any]:
    """``(value - z se, value + z se)`` with ``z`` the normal quantile of ``(1 + level) / 2``.

    Examples
    --------
    >>> from nsm.jackknife import normal_interval
    >>> [round(v, 4) for v in normal_interval(0.5, 0.1)]
    [0.304, 0.696]
    """
    z = NormalDist().inv_cdf(0.5 + check_level(level) / 2.0)
    v, s = np.asarray(value, dtype=np.float64), np.asarray(se, dtype=np.float64)
    low, high = v - z * s, v + z * s
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def estimate(
    value: float, leave_out: Sequence[float], what: str = "the statistic", correct_bias: bool = False
) -> Estimate:
    """An :class:`Estimate` from the full-data ``value`` and the K leave-one-out values; with
    ``correct_bias``, centred on :func:`bias_corrected` instead (the se is the same).

    A leave-one-out value that is NaN while ``value`` is not (a group whose removal leaves a
    layer without variance, say) makes the se NaN, with an NsmWarning naming the groups.

    Examples
    --------
    >>> from nsm.jackknife import estimate
    >>> e = estimate(2.0, [1.0, 2.0, 3.0])
    >>> round(e.se, 6), round(e.low, 4), round(e.high, 4)
    (1.154701, -0.2632, 4.2632)
    """
    t = np.asarray(leave_out, dtype=np.float64)
    if math.isnan(value):
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    bad = np.flatnonzero(~np.isfinite(t))
    if len(bad):
        _diagnostics.warn(
            f"jackknife: {what} is undefined without group(s) {bad.tolist()} although it is "
            "defined on all samples, so its standard error is NaN; use fewer groups",
            NsmWarning,
        )
        return Estimate(float(value), math.nan, math.nan, math.nan)
    se = jackknife_se(t)
    centre = bias_corrected(value, t) if correct_bias else float(value)
    low, high = normal_interval(centre, se)
    return Estimate(centre, se, low, high)


def quiet_leave_out(compute: Callable[[Any], float], grams: Sequence[Any]) -> list[float]:
    """``compute`` on each leave-one-out Gram with nsm's warnings silenced: they would repeat,
    K times, what the full-data computation already said (NaN values are caught by
    :func:`estimate`)."""
    with _diagnostics.collect():  # dropped: FewSamplesWarning and every other NsmWarning
        return [float(compute(g)) for g in grams]
