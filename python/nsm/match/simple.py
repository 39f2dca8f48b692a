"""v-minimal matches and simple matches: at what granularity two layers match."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union, overload

import numpy as np

from .. import _core
from .._progress import progress_bar
from .._validation import (
    check_bool,
    check_neuron,
    check_order,
    check_seed,
    check_threads,
    single_eps,
)
from ..gram import Gram
from .inputs import resolve_gram, split_gram_form
from .maximum import (
    Activations,
    Eps,
    MatchResult,
    _frozen,
    engine_of,
    result_from_mask,
)

__all__ = ["SimpleMatch", "SimpleMatches", "minimal_match", "simple_matches"]

#: A neuron: ('x', i) or ('y', j).
Neuron = tuple[str, int]
#: The seed of a random trial order.
Seed = Union[int, np.random.Generator, None]


def _global(neuron: tuple[str, int], n_x: int) -> int:
    return neuron[1] if neuron[0] == "x" else n_x + neuron[1]


def _orders(order: str, seed: Any, n: int) -> Iterator[list[int]]:
    """The order of trial removals for each search: X then Y by index, or random."""
    if order == "xy":
        fixed = list(range(n))
        while True:
            yield fixed
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n).tolist()


@overload
def minimal_match(
    gram: Gram,
    eps: Eps,
    neuron: Neuron,
    /,
    *,
    order: str = ...,
    seed: Seed = ...,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
) -> MatchResult | None: ...
@overload
def minimal_match(
    X: Activations,
    Y: Activations,
    eps: Eps,
    neuron: Neuron,
    *,
    order: str = ...,
    seed: Seed = ...,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
) -> MatchResult | None: ...
def minimal_match(
    X: Activations | Gram,
    Y: Activations | Eps = None,
    eps: Eps | Neuron | None = None,
    neuron: Neuron | None = None,
    *,
    order: str = "xy",
    seed: Seed = None,
    dead_tol: float | None = None,
    count_dead: bool = True,
    num_threads: int | None = None,
    centered: bool = False,
) -> MatchResult | None:
    """A v-minimal match: ``minimal_match(X, Y, eps, neuron)`` or ``minimal_match(gram, eps, neuron)``.

    The smallest ε-match containing ``neuron`` that contains no smaller ε-match containing it
    (docs/method.md, "Trial removals"). Starting from the maximum match, every other neuron is tried once:
    removed, and the removal kept if ``neuron`` survives in the maximum match of what is left.

    Parameters
    ----------
    X, Y : array-like, or a Gram
        As for :func:`nsm.max_match`.
    eps : float
        Relative error in [0, 1].
    neuron : ('x', i) or ('y', j)
        The neuron the match must contain.
    order : {'xy', 'random'}
        'xy' tries X's neurons by index, then Y's: the authors' procedure, so results compare
        with their code. 'random' tries them in a random order drawn from ``seed``; when a layer
        has redundant neurons, different orders can give different (all valid) answers.
    seed : int or numpy Generator, optional
        For ``order='random'``.
    dead_tol, count_dead, num_threads, centered
        As for :func:`nsm.max_match`.

    Returns
    -------
    MatchResult, or None when ``neuron`` is not in the maximum match.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> X = np.array([[1, .5, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
    ...               [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]).T
    >>> Y = np.array([[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [.5, 1, 0, 0, 0, 0],
    ...               [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]).T
    >>> m = nsm.minimal_match(np.tile(X, (5, 1)), np.tile(Y, (5, 1)), 0.1, ("x", 0))
    >>> m.x.tolist(), m.y.tolist()
    ([0, 1], [1, 2])
    """
    threads = check_threads(num_threads)
    eps, neuron = split_gram_form("minimal_match", X, Y, (eps, neuron), ", eps, neuron")
    eps = single_eps(eps)
    order = check_order(order)
    seed = check_seed(seed)
    count_dead = check_bool(count_dead, "count_dead")
    centered = check_bool(centered, "centered")
    gram = resolve_gram("minimal_match", X, Y, num_threads=threads, form=", eps, neuron", shifted=True)
    neuron = check_neuron(neuron, gram.n_x, gram.n_y)
    engine = engine_of(gram, dead_tol, threads, centered=centered)
    trial_order = next(_orders(order, seed, gram.n))
    search = _core.MinimalMatchSearch(engine, eps, trial_order)
    mask = search.find(_global(neuron, gram.n_x), trial_order)
    if mask is None:
        return None
    return result_from_mask(mask, engine.dead, gram, eps, count_dead, centered)


@dataclass(frozen=True, repr=False, eq=False)
class SimpleMatch:
    """One simple match: its neurons and the searches that found it.

    Attributes
    ----------
    x, y : ndarray of int64
        Sorted indices of its neurons in X and in Y.
    found_from : tuple of ('x', i) / ('y', j)
        The neurons whose v-minimal search returned this match.
    """

    x: np.ndarray
    y: np.ndarray
    found_from: tuple[tuple[str, int], ...]

    @property
    def kind(self) -> str:
        """'1-1', '1-many' (one neuron on one side, several on the other) or 'many-many'."""
        small, large = sorted((len(self.x), len(self.y)))
        if large == 1:
            return "1-1"
        return "1-many" if small == 1 else "many-many"

    def __repr__(self) -> str:
        return f"SimpleMatch(x={self.x.tolist()}, y={self.y.tolist()})"


class SimpleMatches(Sequence[SimpleMatch]):
    """The distinct simple matches found at one ε, in the order they were first found.

    Attributes
    ----------
    eps : float
    maximum_match : MatchResult
        The maximum match the searches started from (the union of all simple matches).
    not_matched : tuple of ('x', i) / ('y', j)
        Requested neurons that are not in the maximum match (no search was run for them).
    """

    def __init__(
        self,
        matches: list[SimpleMatch],
        eps: float,
        maximum_match: MatchResult,
        not_matched: tuple[tuple[str, int], ...],
    ) -> None:
        self._matches = tuple(matches)
        self.eps = eps
        self.maximum_match = maximum_match
        self.not_matched = not_matched

    def __len__(self) -> int:
        return len(self._matches)

    def __getitem__(self, i: Any) -> Any:
        return self._matches[i]

    def sizes(self) -> Counter:
        """How many matches have each size ``(|x|, |y|)``."""
        return Counter((len(m.x), len(m.y)) for m in self._matches)

    def kinds(self) -> dict[str, int]:
        """How many matches are '1-1', '1-many' and 'many-many'."""
        counts = Counter(m.kind for m in self._matches)
        return {k: counts.get(k, 0) for k in ("1-1", "1-many", "many-many")}

    def coverage(self) -> dict[str, float]:
        """For each kind, the share of the maximum match's neurons that lie in a match of it."""
        total = len(self.maximum_match.x) + len(self.maximum_match.y)
        out = {}
        for kind in ("1-1", "1-many", "many-many"):
            xs: set[int] = set()
            ys: set[int] = set()
            for m in self._matches:
                if m.kind == kind:
                    xs.update(m.x.tolist())
                    ys.update(m.y.tolist())
            out[kind] = (len(xs) + len(ys)) / total if total else 0.0
        return out

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k}: {v}" for k, v in self.kinds().items())
        return f"SimpleMatches(eps={self.eps:g}, {len(self)} matches ({kinds}))"


@overload
def simple_matches(
    gram: Gram,
    eps: Eps,
    /,
    *,
    neurons: Iterable[Neuron] | None = ...,
    order: str = ...,
    seed: Seed = ...,
    progress: bool = ...,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
) -> SimpleMatches: ...
@overload
def simple_matches(
    X: Activations,
    Y: Activations,
    eps: Eps,
    *,
    neurons: Iterable[Neuron] | None = ...,
    order: str = ...,
    seed: Seed = ...,
    progress: bool = ...,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
) -> SimpleMatches: ...
def simple_matches(
    X: Activations | Gram,
    Y: Activations | Eps = None,
    eps: Eps | None = None,
    *,
    neurons: Iterable[Neuron] | None = None,
    order: str = "xy",
    seed: Seed = None,
    progress: bool = True,
    dead_tol: float | None = None,
    count_dead: bool = True,
    num_threads: int | None = None,
    centered: bool = False,
) -> SimpleMatches:
    """All simple matches: ``simple_matches(X, Y, eps)`` or ``simple_matches(gram, eps)``.

    Runs one v-minimal search (see :func:`minimal_match`) per neuron of the maximum match (or
    per neuron of ``neurons``) and keeps the distinct results: the simple matches are exactly
    the v-minimal matches (docs/method.md, "Definitions"). The maximum match is computed once; each search
    starts from it. Ctrl-C stops within a second with KeyboardInterrupt.

    Parameters
    ----------
    neurons : iterable of ('x', i) / ('y', j), optional
        Search only for these neurons.
    order, seed
        As for :func:`minimal_match`; with 'random', each search draws its own order.
    progress : bool
        Show a progress bar (tqdm) over the searches.
    dead_tol, count_dead, num_threads, centered
        As for :func:`nsm.max_match` (``centered``: the simple matches of the centred match).

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.standard_normal((2000, 3))
    >>> X = np.hstack([Z[:, :1], Z[:, 1:] @ rng.standard_normal((2, 2))])
    >>> Y = np.hstack([2 * Z[:, :1], Z[:, 1:]])
    >>> s = nsm.simple_matches(X, Y, 0.01, progress=False)
    >>> [(m.x.tolist(), m.y.tolist()) for m in s]
    [([0], [0]), ([1, 2], [1, 2])]
    >>> s.kinds()
    {'1-1': 1, '1-many': 0, 'many-many': 1}
    """
    threads = check_threads(num_threads)
    (eps,) = split_gram_form("simple_matches", X, Y, (eps,), ", eps")
    eps = single_eps(eps)
    order = check_order(order)
    seed = check_seed(seed)
    progress = check_bool(progress, "progress")
    count_dead = check_bool(count_dead, "count_dead")
    centered = check_bool(centered, "centered")
    gram = resolve_gram("simple_matches", X, Y, num_threads=threads, form=", eps", shifted=True)
    engine = engine_of(gram, dead_tol, threads, centered=centered)
    orders = _orders(order, seed, gram.n)
    first_order = next(orders)
    search = _core.MinimalMatchSearch(engine, eps, first_order)
    maximum = search.maximum_match()
    n_x = gram.n_x
    if neurons is None:
        wanted = [("x", i) for i in range(n_x)] + [("y", j) for j in range(gram.n_y)]
    else:
        wanted = [check_neuron(v, n_x, gram.n_y, "each of neurons") for v in neurons]
    todo = [v for v in wanted if maximum[_global(v, n_x)]]
    not_matched = tuple(v for v in wanted if not maximum[_global(v, n_x)])
    found: dict[bytes, tuple[np.ndarray, list[tuple[str, int]]]] = {}
    bar = progress_bar(len(todo), progress, f"simple matches (eps={eps:g})", "neuron")
    try:
        for i, v in enumerate(todo):
            mask = search.find(_global(v, n_x), first_order if i == 0 else next(orders))
            key = np.packbits(mask).tobytes()
            if key not in found:
                found[key] = (mask, [])
            found[key][1].append(v)
            bar.update(1)
    finally:
        bar.close()
    matches = [
        SimpleMatch(
            x=_frozen(np.flatnonzero(mask[:n_x]).astype(np.int64)),
            y=_frozen(np.flatnonzero(mask[n_x:]).astype(np.int64)),
            found_from=tuple(sources),
        )
        for mask, sources in found.values()
    ]
    mm = result_from_mask(maximum, engine.dead, gram, eps, count_dead, centered)
    return SimpleMatches(matches, eps, mm, not_matched)
