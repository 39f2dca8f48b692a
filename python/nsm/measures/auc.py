"""``match_auc``: the area under the maximum-match similarity curve, from the thresholds."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _diagnostics
from .._diagnostics import NsmWarning
from .._validation import check_bool, check_groups, check_layer_names
from ..jackknife import Estimate, estimate
from ..match.engines import Engine
from ..match.thresholds import Thresholds, match_thresholds
from .standard import _gram_of


def match_auc(
    X: Any,
    Y: Any = None,
    /,
    *,
    count_dead: bool = True,
    dead_tol: float | None = None,
    names: tuple[str, str] = ("X", "Y"),
    num_threads: int | None = None,
    groups: int | None = None,
    correct_bias: bool = False,
    centered: bool | None = None,
    engine: Engine = "auto",
    device: Any = None,
) -> float | Estimate:
    """Area under the maximum-match similarity curve, ``∫₀¹ MMS(ε) dε`` (nsm's ε-free summary).

    ``MMS(ε)`` is the fraction of both layers' neurons in the maximum ε-match (Wang et al.,
    NeurIPS 2018). It is a step function of ε that rises by ``1 / n`` at each neuron's critical
    ε ``t_v`` (:func:`nsm.match_thresholds`), so the area is exactly
    ``Σ_v (1 - t_v) / n`` over the neurons that ever match, ``n`` the denominator of the
    similarity (dead neurons count in it unless ``count_dead=False``). 1 means every neuron
    matches at ε = 0; a neuron that only matches at ε = 1 adds nothing. Uncentred, like the
    match itself, unless ``centered=True``: compare with the baseline's value, which post-ReLU
    layers keep high uncentred.

    Parameters
    ----------
    X, Y : array-like, or a Gram, or a :class:`nsm.Thresholds`
        Activations, a Gram, or thresholds computed before (then ``count_dead`` and
        ``dead_tol`` are the thresholds' own, and their ``leave_out`` gives the error bars).
    count_dead, dead_tol, num_threads, groups, centered
        As for :func:`nsm.match_thresholds` (``centered``: None means False for arrays and
        Grams; thresholds passed in keep their own, and a different ``centered=`` raises).
    names
        As for :func:`linear_cka`.
    correct_bias : bool
        With groups: centre the estimate on the jackknife's bias-corrected value
        ``K value - (K - 1) mean(leave-one-out)`` instead of the full-data value. The area is
        biased upwards by O(n / n_samples) (spans fitted on few samples hold some of the
        noise); at 2,000 samples for 64 + 64 neurons that bias was four times the se, and only
        the corrected interval covered the truth at 95% (docs/method.md, "Error bars").
    engine, device
        As for :func:`nsm.match_thresholds` (the thresholds' engine; ignored for thresholds
        passed in).

    Returns
    -------
    float in [0, 1]; NaN (with an NsmWarning) when a layer has no live neuron. With groups, an
    :class:`nsm.Estimate` ``(value, se, low, high)``: the jackknife of the area is the interval
    to trust where the similarity at one ε is too coarse (docs/method.md, "Error bars").

    Examples
    --------
    >>> import numpy as np, nsm
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]] * 100)
    >>> Y = np.array([[0.0], [np.sqrt(3) / 2], [0.5]] * 100)  # 30° from X's second neuron
    >>> t = nsm.match_thresholds(X, Y)
    >>> np.round(t.x, 6).tolist(), np.round(t.y, 6).tolist()
    ([1.0, 0.5], [0.5])
    >>> round(nsm.measures.match_auc(t), 6)  # ((1 - 1) + (1 - 0.5) + (1 - 0.5)) / 3
    0.333333
    """
    name_x, name_y = check_layer_names(names)
    if isinstance(X, Thresholds):
        if Y is not None:
            raise TypeError(
                "match_auc() takes (X, Y), (gram) or (thresholds): got thresholds and a second argument"
            )
        t = X
        if centered is not None and check_bool(centered, "centered") != t.centered:
            raise ValueError(
                f"match_auc: centered={centered} but the thresholds are of the "
                f"{'centred' if t.centered else 'uncentred'} match: pass centered={t.centered}"
            )
        k = check_groups(groups)
        if k is not None and t.groups != k:
            raise ValueError(
                f"match_auc: groups={k} but the thresholds have {t.groups or 'no'} groups: compute them "
                f"with nsm.match_thresholds(..., groups={k})"
            )
    else:
        t = match_thresholds(
            _gram_of(X, Y, "match_auc", num_threads, groups),
            count_dead=count_dead,
            dead_tol=dead_tol,
            num_threads=num_threads,
            centered=False if centered is None else centered,
            engine=engine,
            device=device,
        )
    correct_bias = check_bool(correct_bias, "correct_bias")
    value = _auc_or_nan(t, (name_x, name_y), warn=True)
    if t.leave_out is None:
        if correct_bias:
            raise ValueError("match_auc: correct_bias=True needs jackknife groups: pass groups=K")
        return value
    leave_out = [_auc_or_nan(lo, (name_x, name_y), warn=False) for lo in t.leave_out]
    return estimate(value, leave_out, "match_auc", correct_bias)


def _auc_or_nan(t: Thresholds, names: tuple[str, str], warn: bool) -> float:
    """The area, or NaN (with an NsmWarning when ``warn``) when a layer has no live neuron."""
    for n, dead, name, which in ((t.n_x, t.dead_x, names[0], "X"), (t.n_y, t.dead_y, names[1], "Y")):
        if len(dead) == n:
            if warn:
                _diagnostics.warn(
                    f"match_auc: layer {name!r} ({which}) has no live neuron (all are zero on "
                    "these samples), so the measure is undefined: NaN",
                    NsmWarning,
                )
            return math.nan
    return _auc_of(t)


def _auc_of(t: Thresholds) -> float:
    """``∫₀¹ t.similarity(ε) dε`` from the critical ε (0 when nothing ever matches)."""
    denominator = t.n_x + t.n_y - (0 if t.count_dead else len(t.dead_x) + len(t.dead_y))
    every = np.concatenate([t.x, t.y])
    finite = every[np.isfinite(every)]
    if denominator == 0:
        return 0.0
    return float(np.sum(1.0 - np.clip(finite, 0.0, 1.0)) / denominator)
