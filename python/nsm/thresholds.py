"""Every neuron's critical ε: the maximum match and its similarity for all ε at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from .gram import Gram
from .match import Activations, MatchResult, _frozen, engine_of, gram_of, result_from_mask
from .validation import check_bool, check_eps, check_similarity, check_threads, single_eps

__all__ = ["Curve", "Thresholds", "match_thresholds"]


class Curve(NamedTuple):
    """The similarity as an exact step function of ε: ``similarity[i]`` holds for
    ``breakpoints[i] <= ε < breakpoints[i + 1]`` and is 0 below ``breakpoints[0]``."""

    breakpoints: np.ndarray
    similarity: np.ndarray


@dataclass(frozen=True, repr=False, eq=False)
class Thresholds:
    """Each neuron's critical ε ``t_v = min{ε : v in MM(ε)}``, so ``MM(ε) = {v : t_v <= ε}``.

    Attributes
    ----------
    x, y : ndarray of float64
        Critical ε of each neuron of X and of Y; ``inf`` for dead neurons (and for every neuron
        when one layer has no live neuron: then nothing ever matches).
    dead_x, dead_y : ndarray of int64
        Indices of dead neurons.
    n_samples, n_x, n_y : int
    count_dead : bool
        Whether dead neurons count in the similarity's denominator.
    centered : bool
        Whether these are the centred match's thresholds (each neuron's mean removed).
    """

    x: np.ndarray
    y: np.ndarray
    dead_x: np.ndarray
    dead_y: np.ndarray
    n_samples: int
    n_x: int
    n_y: int
    count_dead: bool = True
    centered: bool = False

    # Derived once, on first use (the fields never change).
    @cached_property
    def _all(self) -> np.ndarray:
        return np.concatenate([self.x, self.y])

    @cached_property
    def _dead(self) -> np.ndarray:
        dead = np.zeros(self.n_x + self.n_y, dtype=bool)
        dead[self.dead_x] = True
        dead[self.n_x + self.dead_y] = True
        return dead

    @cached_property
    def _sorted(self) -> np.ndarray:
        return np.sort(self._all[np.isfinite(self._all)])

    @property
    def _denominator(self) -> int:
        dead = 0 if self.count_dead else len(self.dead_x) + len(self.dead_y)
        return self.n_x + self.n_y - dead

    def max_match(self, eps: float) -> MatchResult:
        """The maximum match at ``eps``: the same result as ``nsm.max_match(..., eps)``.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((500, 6))
        >>> t = nsm.match_thresholds(X, 3 * X[:, :2])
        >>> t.max_match(0.0).y.tolist()
        [0, 1]
        """
        e = single_eps(eps, "Thresholds.max_match takes one eps; use a loop or nsm.max_match for several")
        sizes = _Sizes(self.n_x, self.n_y, self.n_samples)
        return result_from_mask(self._all <= e, self._dead, sizes, e, self.count_dead, self.centered)

    def similarity(self, eps: Any) -> Any:
        """Maximum-match similarity at ``eps`` (a number or an array of numbers in [0, 1]).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> t = nsm.match_thresholds(X, X[:, :2])
        >>> t.similarity([0.0, 1.0]).tolist()
        [0.6666666666666666, 1.0]
        """
        values, single = check_eps(eps)
        e = np.asarray(values[0] if single else values, dtype=np.float64)
        denominator = self._denominator
        if denominator == 0:
            out = np.zeros_like(e)
        else:
            out = np.searchsorted(self._sorted, e, side="right") / denominator
        return float(out) if out.ndim == 0 else out

    def curve(self) -> Curve:
        """The exact step function ε ↦ similarity (see :class:`Curve`).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> c = nsm.match_thresholds(X, X[:, :2]).curve()
        >>> c.breakpoints[0], float(c.similarity[-1])
        (np.float64(0.0), 1.0)
        """
        t = self._sorted
        breakpoints, counts = np.unique(t, return_counts=True)
        denominator = max(self._denominator, 1)
        return Curve(_frozen(breakpoints), _frozen(np.cumsum(counts) / denominator))

    def eps_for(self, similarity: float) -> float:
        """The smallest ε whose similarity reaches ``similarity`` (inf if none does).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> nsm.match_thresholds(X, X).eps_for(1.0)
        0.0
        """
        similarity = check_similarity(similarity)
        t = self._sorted
        need = math.ceil(similarity * self._denominator - 1e-12)
        return float(t[need - 1]) if 0 < need <= len(t) else math.inf

    def all_live_eps(self) -> float:
        """The smallest ε at which every live neuron of both layers matches (inf if never).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((500, 3))
        >>> nsm.match_thresholds(X, X[:, ::-1]).all_live_eps()
        0.0
        """
        live = self._all[~self._dead]
        return float(live.max()) if len(live) else math.inf

    def __repr__(self) -> str:
        dead = len(self.dead_x) + len(self.dead_y)
        dead_text = f", dead={len(self.dead_x)}+{len(self.dead_y)}" if dead else ""
        return (
            f"Thresholds(n_x={self.n_x}, n_y={self.n_y}, half match at eps={self.eps_for(0.5):.4g}, "
            f"all live match at eps={self.all_live_eps():.4g}{dead_text}, n_samples={self.n_samples}"
            f"{', centered' if self.centered else ''})"
        )


class _Sizes(NamedTuple):
    """What result_from_mask needs to know of a Gram."""

    n_x: int
    n_y: int
    n_samples: int

    @property
    def n(self) -> int:
        return self.n_x + self.n_y


def match_thresholds(
    X: Activations | Gram,
    Y: Activations | None = None,
    *,
    dead_tol: float | None = None,
    count_dead: bool = True,
    num_threads: int | None = None,
    centered: bool = False,
) -> Thresholds:
    """Every neuron's critical ε: ``match_thresholds(X, Y)`` or ``match_thresholds(gram)``.

    One peeling pass (docs/method.md, "Critical ε") gives each neuron the smallest ε at which it belongs to
    the maximum match, hence the maximum match and its similarity for every ε at once, and a
    per-neuron measure of how well the other network represents it.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y), or a Gram in place of both
        As for :func:`nsm.max_match`.
    dead_tol, count_dead, num_threads, centered
        As for :func:`nsm.max_match` (``centered``: the centred match's thresholds).

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((1000, 5))
    >>> Y = np.hstack([X[:, :3] @ rng.random((3, 3)), rng.random((1000, 2))])
    >>> t = nsm.match_thresholds(X, Y)
    >>> t.similarity(0.0)  # X's first 3 neurons and Y's first 3 span the same space
    0.6
    >>> t.max_match(0.0).x.tolist()
    [0, 1, 2]
    """
    threads = check_threads(num_threads)
    count_dead = check_bool(count_dead, "count_dead")
    centered = check_bool(centered, "centered")
    if isinstance(X, Gram) and Y is not None:
        raise TypeError("match_thresholds() takes (X, Y) or (gram)")
    gram = gram_of("match_thresholds", X, Y, threads, "")
    engine = engine_of(gram, dead_tol, threads, centered=centered)
    t = engine.thresholds()
    dead = engine.dead
    n_x = gram.n_x
    return Thresholds(
        x=_frozen(t[:n_x].copy()),
        y=_frozen(t[n_x:].copy()),
        dead_x=_frozen(np.flatnonzero(dead[:n_x]).astype(np.int64)),
        dead_y=_frozen(np.flatnonzero(dead[n_x:]).astype(np.int64)),
        n_samples=gram.n_samples,
        n_x=n_x,
        n_y=gram.n_y,
        count_dead=count_dead,
        centered=centered,
    )
