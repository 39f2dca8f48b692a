"""The maximum match of two layers and each neuron's ratio (docs/method.md, "Definitions",
"Peeling")."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Union

import numpy as np

from . import _core
from .arrays import check_threads
from .exceptions import FewSamplesWarning
from .gram import Gram

__all__ = ["MatchResult", "Ratios", "max_match", "ratios"]

DEFAULT_DEAD_TOL = 1e-20

EpsLike = Union[float, Sequence[float], np.ndarray]


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, repr=False, eq=False)
class MatchResult:
    """The maximum match of two layers at one ε.

    Attributes
    ----------
    x, y : ndarray of int64
        Sorted indices of the matched neurons of X and of Y (columns of the caller's arrays).
    eps : float
        The relative error ε.
    similarity : float
        Maximum-match similarity ``(|x| + |y|) / (n_x + n_y)``; with ``count_dead=False`` dead
        neurons leave the denominator.
    dead_x, dead_y : ndarray of int64
        Indices of dead neurons (zero activation vector); never in a match.
    n_samples, n_x, n_y : int
        Samples the Gram summed over; neurons per layer.
    count_dead : bool
        Whether dead neurons count in the similarity's denominator.
    """

    x: np.ndarray
    y: np.ndarray
    eps: float
    similarity: float
    dead_x: np.ndarray
    dead_y: np.ndarray
    n_samples: int
    n_x: int
    n_y: int
    count_dead: bool = True

    def __repr__(self) -> str:
        dead = f", dead={len(self.dead_x)}+{len(self.dead_y)}" if len(self.dead_x) + len(self.dead_y) else ""
        return (
            f"MatchResult(eps={self.eps:g}, x={len(self.x)}/{self.n_x}, y={len(self.y)}/{self.n_y}, "
            f"similarity={self.similarity:.4f}{dead}, n_samples={self.n_samples})"
        )


class Ratios(NamedTuple):
    """Each neuron's ratio (sine of its angle) against the whole other layer's span.

    Dead neurons get 0 (a zero vector lies in every span) but are never matched; a live
    neuron gets 1 when the other layer is all dead. ``max(x.max(), y.max())`` is the smallest
    ε at which all live neurons of both layers match.
    """

    x: np.ndarray
    y: np.ndarray


def _check_eps(eps: Any) -> tuple[list[float], bool]:
    """The ε values as floats, and whether a single value was given."""
    single = isinstance(eps, numbers.Real) and not isinstance(eps, bool)
    if single:
        values = [eps]
    elif isinstance(eps, (str, bytes)) or isinstance(eps, bool) or eps is None:
        raise TypeError(f"eps must be a number or a sequence of numbers, got {eps!r}")
    else:
        try:
            arr = np.asarray(eps)
        except Exception as exc:
            raise TypeError(f"eps must be a number or a sequence of numbers, got {eps!r}") from exc
        if arr.ndim == 0 and arr.dtype.kind in "iuf":
            return _check_eps(float(arr))
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            raise TypeError(f"eps must be a number or a 1-D sequence of numbers, got {eps!r}")
        if arr.size == 0:
            raise ValueError("eps is an empty sequence")
        values = arr.tolist()
    out = []
    for e in values:
        e = float(e)
        if not math.isfinite(e) or not 0.0 <= e <= 1.0:
            raise ValueError(f"eps must be finite and in [0, 1], got {e}")
        out.append(e)
    return out, single


def single_eps(eps: Any, message: str) -> float:
    """One checked eps; TypeError(message) for a sequence."""
    values, single = _check_eps(eps)
    if not single:
        raise TypeError(message)
    return values[0]


def _check_dead_tol(dead_tol: Any) -> float:
    if dead_tol is None:
        return DEFAULT_DEAD_TOL
    if isinstance(dead_tol, bool) or not isinstance(dead_tol, numbers.Real):
        raise TypeError(f"dead_tol must be a number, got {dead_tol!r}")
    dead_tol = float(dead_tol)
    if not math.isfinite(dead_tol) or not 0.0 <= dead_tol < 1.0:
        raise ValueError(f"dead_tol must be in [0, 1), got {dead_tol}")
    return dead_tol


def gram_of(args: tuple, function: str, extra: str, num_threads: int) -> tuple[Gram, tuple]:
    """Split ``(X, Y, *rest)`` or ``(gram, *rest)`` into a Gram and the rest."""
    if args and isinstance(args[0], Gram):
        return args[0], args[1:]
    if len(args) < 2:
        raise TypeError(f"{function}() takes (X, Y{extra}) or (gram{extra})")
    return Gram.from_arrays(args[0], args[1], num_threads=num_threads), args[2:]


def engine_of(gram: Gram, dead_tol: Any, num_threads: int, stacklevel: int = 2) -> Any:
    """A core MatchEngine for ``gram``, after checks and the few-samples warning."""
    if gram.n_samples == 0:
        raise ValueError("gram has no samples: update it with activations first")
    if gram.n_samples <= gram.n:
        warnings.warn(
            f"{gram.n_samples} samples for {gram.n_x} + {gram.n_y} neurons: with n_samples <= "
            "n_x + n_y every neuron lies in the other layer's span and the similarity is "
            "trivially 1; use many more samples than neurons",
            FewSamplesWarning,
            stacklevel=stacklevel + 1,
        )
    return _core.MatchEngine(
        gram.matrix, gram.n_x, gram.n_samples, _check_dead_tol(dead_tol), 0.0, num_threads
    )


def similarity_of(matched: int, n: int, n_dead: int, count_dead: bool) -> float:
    """MMS (docs/method.md, "Definitions") with the dead-neuron convention."""
    denominator = n if count_dead else n - n_dead
    return matched / denominator if denominator > 0 else 0.0


class LayerSizes(Protocol):
    """What result_from_mask needs of a Gram (a Gram, or the sizes that Thresholds keep)."""

    @property
    def n_x(self) -> int: ...
    @property
    def n_y(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def n_samples(self) -> int: ...


def result_from_mask(
    mask: np.ndarray, dead: np.ndarray, gram: LayerSizes, eps: float, count_dead: bool
) -> MatchResult:
    n_x = gram.n_x
    x = np.flatnonzero(mask[:n_x]).astype(np.int64)
    y = np.flatnonzero(mask[n_x:]).astype(np.int64)
    dead_x = np.flatnonzero(dead[:n_x]).astype(np.int64)
    dead_y = np.flatnonzero(dead[n_x:]).astype(np.int64)
    return MatchResult(
        x=_frozen(x),
        y=_frozen(y),
        eps=float(eps),
        similarity=similarity_of(len(x) + len(y), gram.n, len(dead_x) + len(dead_y), count_dead),
        dead_x=_frozen(dead_x),
        dead_y=_frozen(dead_y),
        n_samples=gram.n_samples,
        n_x=n_x,
        n_y=gram.n_y,
        count_dead=bool(count_dead),
    )


def max_match(
    *args: Any,
    dead_tol: float | None = None,
    count_dead: bool = True,
    num_threads: int | None = None,
) -> MatchResult | list[MatchResult]:
    """The maximum ε-match of two layers: ``max_match(X, Y, eps)`` or ``max_match(gram, eps)``.

    The maximum match is the largest pair of neuron sets ``(X*, Y*)`` such that every neuron of
    ``X*`` lies within relative distance ``eps`` of the span of ``Y*`` and vice versa
    (docs/method.md, "Definitions"). After one Gram pass its cost does not depend on the number of samples.

    Parameters
    ----------
    X, Y : array-like of shape (n_samples, n_x) and (n_samples, n_y)
        Activations of two layers on the same inputs, neurons as columns (numpy arrays or CPU
        torch tensors, any real dtype and layout; torch is not imported for numpy input).
    gram : Gram
        Instead of ``X, Y``: a Gram accumulated beforehand.
    eps : float or sequence of floats in [0, 1]
        Relative error. A sequence gives a list of results from one Gram pass and one peeling.
    dead_tol : float, optional
        A neuron is dead when ``G_vv <= dead_tol * max G_uu`` over its own layer (default
        1e-20: zero vectors up to rounding). Dead neurons are never matched.
    count_dead : bool
        Count dead neurons in the similarity's denominator (the authors' convention).
    num_threads : int, optional
        Threads for the core (default: all cores of this process).

    Returns
    -------
    MatchResult, or a list of them (one per ε, in the given order) for a sequence of ε.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> X = np.array([[1, .5, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
    ...               [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]).T
    >>> Y = np.array([[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [.5, 1, 0, 0, 0, 0],
    ...               [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]).T
    >>> m = nsm.max_match(np.tile(X, (5, 1)), np.tile(Y, (5, 1)), 0.1)
    >>> m.x.tolist(), m.y.tolist()
    ([0, 1, 2, 3], [1, 2, 3, 4])
    >>> round(m.similarity, 3)
    0.889
    """
    threads = check_threads(num_threads)
    gram, rest = gram_of(args, "max_match", ", eps", threads)
    if len(rest) != 1:
        raise TypeError("max_match() takes (X, Y, eps) or (gram, eps)")
    eps_list, single = _check_eps(rest[0])
    engine = engine_of(gram, dead_tol, threads)
    masks = engine.max_match(eps_list)
    dead = engine.dead
    results = [result_from_mask(masks[i], dead, gram, e, count_dead) for i, e in enumerate(eps_list)]
    return results[0] if single else results


def ratios(*args: Any, dead_tol: float | None = None, num_threads: int | None = None) -> Ratios:
    """Each neuron's ratio against the whole other layer: ``ratios(X, Y)`` or ``ratios(gram)``.

    The ratio of neuron v is ``dist(z_v, span(other layer)) / ||z_v||``, the sine of the angle
    between its activation vector and the other layer's span. See :class:`Ratios` for dead
    neurons.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> r = nsm.ratios(np.array([[1.0], [1.0], [0.0]]), np.array([[1.0], [0.0], [0.0]]))
    >>> round(float(r.x[0]), 8)
    0.70710678
    """
    threads = check_threads(num_threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)  # ratios are exact whatever d is
        gram, rest = gram_of(args, "ratios", "", threads)
        if rest:
            raise TypeError("ratios() takes (X, Y) or (gram)")
        engine = engine_of(gram, dead_tol, threads)
    r = engine.ratios()
    return Ratios(x=_frozen(r[: gram.n_x].copy()), y=_frozen(r[gram.n_x :].copy()))
