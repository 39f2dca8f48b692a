"""Every neuron's critical ε: the maximum match and its similarity for all ε at once."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from .._validation import check_bool, check_eps, check_similarity, check_threads, single_eps
from ..gram import Gram
from ..jackknife import DEFAULT_LEVEL, jackknife_se, normal_interval
from ..starved import degenerate, starved
from .engines import Engine, check_engine
from .inputs import resolve_gram
from .maximum import Activations, MatchResult, _frozen, engine_name, engine_of, result_from_mask

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
    leave_out : tuple of Thresholds, optional
        With jackknife groups (``match_thresholds(..., groups=K)`` or a Gram with groups), the
        thresholds of the K leave-one-group-out Grams, from which :meth:`similarity_se` and
        :meth:`similarity_interval` come; None without groups.
    engine : {"core", "torch"}
        Which engine computed them (``engine=`` of :func:`nsm.match_thresholds`).
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
    leave_out: tuple[Thresholds, ...] | None = None
    engine: str = "core"

    @property
    def degenerate(self) -> bool:
        """At most as many samples as neurons (:func:`nsm.starved.degenerate`): one layer's span
        can hold the other's whatever the networks compute (the FewSamplesWarning's case).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((30, 4))  # 30 samples for 4 + 4 neurons
        >>> t = nsm.match_thresholds(X, X)
        >>> t.degenerate, t.starved
        (False, True)
        """
        return degenerate(self.n_samples, self.n_x + self.n_y, self.centered)

    @property
    def starved(self) -> bool:
        """Under 4 samples per neuron (:func:`nsm.starved.starved`): chance lowers every critical
        ε, so the similarity is inflated."""
        return starved(self.n_samples, self.n_x, self.n_y)

    @property
    def groups(self) -> int | None:
        """The number of jackknife groups (None without them)."""
        return None if self.leave_out is None else len(self.leave_out)

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
        return result_from_mask(
            self._all <= e, self._dead, sizes, e, self.count_dead, self.centered, self.engine
        )

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

    def require_leave_out(self, what: str) -> tuple[Thresholds, ...]:
        """The K leave-one-group-out thresholds, or a ValueError saying how to keep them
        (``what`` names the computation that needs them).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.random.default_rng(0).random((60, 3))
        >>> len(nsm.match_thresholds(X, X, groups=3).require_leave_out("my_se"))
        3
        """
        if self.leave_out is None:
            raise ValueError(
                f"Thresholds.{what} needs jackknife groups: pass groups= (for example "
                "nsm.match_thresholds(X, Y, groups=20), nsm.Gram(..., groups=20) or "
                "nsm.torch.compare(..., groups=20))"
            )
        return self.leave_out

    def similarity_se(self, eps: Any) -> Any:
        """Jackknife standard error of :meth:`similarity` at ``eps`` (shaped like it).

        ``sqrt((K-1)/K Σ_k (s_k - mean)²)`` over the similarities ``s_k`` of the K
        leave-one-group-out Grams. The similarity at a fixed ε is a step function of the data:
        its jackknife se is coarse (docs/method.md, "Error bars", has the measured coverage);
        :func:`nsm.measures.match_auc`'s is the one to trust. A ValueError without groups.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> rng = np.random.default_rng(0)
        >>> X = np.maximum(rng.standard_normal((4000, 8)), 0)
        >>> Y = np.maximum(X @ rng.standard_normal((8, 8)) + rng.standard_normal((4000, 8)), 0)
        >>> t = nsm.match_thresholds(X, Y, groups=10)
        >>> se = t.similarity_se([0.3, 0.6])
        >>> se.shape, bool(np.all(se >= 0))
        ((2,), True)
        """
        leave_out = self.require_leave_out("similarity_se")
        values, single = check_eps(eps)
        e = np.asarray(values[0] if single else values, dtype=np.float64)
        return jackknife_se(np.stack([np.asarray(t.similarity(e)) for t in leave_out]))

    def similarity_interval(self, eps: Any, level: float = DEFAULT_LEVEL) -> tuple[Any, Any]:
        """Normal interval ``similarity(eps) ± z se`` (``z`` the normal quantile of
        ``(1 + level) / 2``): two arrays (or floats), low and high, shaped like ``eps``. Not
        clipped to [0, 1]. A ValueError without groups.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> rng = np.random.default_rng(0)
        >>> X = np.maximum(rng.standard_normal((4000, 8)), 0)
        >>> Y = np.maximum(X @ rng.standard_normal((8, 8)) + rng.standard_normal((4000, 8)), 0)
        >>> t = nsm.match_thresholds(X, Y, groups=10)
        >>> low, high = t.similarity_interval(0.5, level=0.9)
        >>> bool(low <= t.similarity(0.5) <= high)
        True
        """
        se = self.similarity_se(eps)
        return normal_interval(self.similarity(eps), se, level)

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
        groups = "" if self.leave_out is None else f", groups={len(self.leave_out)}"
        engine = ", engine=torch" if self.engine == "torch" else ""
        return (
            f"Thresholds(n_x={self.n_x}, n_y={self.n_y}, half match at eps={self.eps_for(0.5):.4g}, "
            f"all live match at eps={self.all_live_eps():.4g}{dead_text}, n_samples={self.n_samples}"
            f"{', centered' if self.centered else ''}{groups}{engine})"
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
    groups: int | None = None,
    engine: Engine = "auto",
    device: Any = None,
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
        As for :func:`nsm.max_match` (``centered``: the centred match's thresholds, and
        those of the leave-one-out Grams with ``groups``).
    groups : int >= 2, optional
        Jackknife error bars: deal the rows into ``groups`` contiguous blocks
        (:meth:`nsm.Gram.from_arrays`) and also compute the thresholds of every
        leave-one-block-out Gram (``groups`` + 1 peelings, memory ``groups`` + 1 Grams), kept
        in ``leave_out`` for :meth:`Thresholds.similarity_se`. A Gram built with groups gives
        them without this argument; an ungrouped Gram cannot (its samples are summed).
    engine, device
        As for :func:`nsm.max_match`: the C++ core or the torch engine on a device (the same
        thresholds to rounding; ``engine`` of the result says which ran).

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
    engine_checked, device = check_engine(engine, device)
    gram = resolve_gram("match_thresholds", X, Y, num_threads=threads, groups=groups)
    t = _thresholds_of(gram, dead_tol, count_dead, threads, centered, engine=engine_checked, device=device)
    return gram_thresholds(
        gram, count_dead, centered, threads, dead_tol, first=t, engine=engine_checked, device=device
    )


def gram_thresholds(
    gram: Gram,
    count_dead: bool,
    centered: bool,
    threads: int,
    dead_tol: float | None = None,
    first: Thresholds | None = None,
    engine: str = "core",
    device: Any = None,
) -> Thresholds:
    """:func:`match_thresholds` of a Gram without any warning (the caller says what there is to
    say, from ``Thresholds.degenerate``): the thresholds (``first`` when already
    computed) and, with groups, the leave-one-out ones (``engine``, ``device``: see
    nsm.match.engines). Touches no process-wide warnings state, so threads may call it side
    by side."""
    if first is None:
        t = _thresholds_of(gram, dead_tol, count_dead, threads, centered, False, engine, device)
    else:
        t = first
    if gram.groups is None:
        return t
    # Quiet: the full Gram's warning (if any) said it already.
    leave_out = tuple(
        _thresholds_of(g, dead_tol, count_dead, threads, centered, False, engine, device)
        for g in gram.leave_one_out()
    )
    return replace(t, leave_out=leave_out)


def _thresholds_of(
    gram: Gram,
    dead_tol: float | None,
    count_dead: bool,
    threads: int,
    centered: bool,
    warn: bool = True,
    engine: str = "core",
    device: Any = None,
) -> Thresholds:
    peeler = engine_of(gram, dead_tol, threads, centered=centered, warn=warn, engine=engine, device=device)
    t = peeler.thresholds()
    dead = peeler.dead
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
        engine=engine_name(peeler),
    )
