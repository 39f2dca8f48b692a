"""The maximum match of two layers and each neuron's ratio (docs/method.md, "Definitions",
"Peeling")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Union, overload

import numpy as np

from .. import _core, _diagnostics
from .._diagnostics import FewSamplesWarning
from .._validation import (  # noqa: F401  (DEFAULT_DEAD_TOL, single_eps: for nsm.measures, nsm.results)
    DEFAULT_DEAD_TOL,
    check_bool,
    check_dead_tol,
    check_eps,
    check_threads,
    single_eps,
)
from ..gram import Gram, centered_matrix
from ..starved import degenerate
from .engines import Engine, check_engine, choose_engine, torch_engine
from .inputs import resolve_gram, split_gram_form

__all__ = ["MatchResult", "Ratios", "max_match", "ratios"]

#: Activations of one layer: a numpy array or CPU torch tensor (n_samples, n_neurons), or
#: anything ``numpy.asarray`` reads as one.
Activations = Any
#: One relative error ε in [0, 1].
Eps = Union[float, np.floating]
#: Several ε at once (one result each).
EpsSequence = Union[Sequence[float], np.ndarray]
EpsLike = Union[Eps, EpsSequence]


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
    centered : bool
        Whether each neuron's mean over the samples was removed before matching (the centred
        match; neurons constant over the samples are then dead).
    engine : {"core", "torch"}
        Which engine computed it: the C++ core or the torch engine (``engine=`` of
        :func:`nsm.max_match`).
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
    centered: bool = False
    engine: str = "core"

    def __repr__(self) -> str:
        dead = f", dead={len(self.dead_x)}+{len(self.dead_y)}" if len(self.dead_x) + len(self.dead_y) else ""
        return (
            f"MatchResult(eps={self.eps:g}, x={len(self.x)}/{self.n_x}, y={len(self.y)}/{self.n_y}, "
            f"similarity={self.similarity:.4f}{dead}, n_samples={self.n_samples}"
            f"{', centered' if self.centered else ''}{', engine=torch' if self.engine == 'torch' else ''})"
        )


class Ratios(NamedTuple):
    """Each neuron's ratio (sine of its angle) against the whole other layer's span.

    Dead neurons get 0 (a zero vector lies in every span) but are never matched; a live
    neuron gets 1 when the other layer is all dead. ``max(x.max(), y.max())`` is the smallest
    ε at which all live neurons of both layers match.
    """

    x: np.ndarray
    y: np.ndarray


def engine_of(
    gram: Gram,
    dead_tol: Any,
    num_threads: int,
    centered: bool = False,
    warn: bool = True,
    engine: str = "core",
    device: Any = None,
) -> Any:
    """A core MatchEngine for ``gram`` (its centred Gram with ``centered``), or with
    ``engine="torch"`` the torch engine on ``device`` (see nsm.match.engines), after checks and
    (with ``warn``) the few-samples warning."""
    parts = gram.parts(groups=False)
    matrix, n_samples = parts.matrix, parts.n_samples
    if n_samples == 0:
        raise ValueError("gram has no samples: update it with activations first")
    dead_tol = check_dead_tol(dead_tol)
    if warn and degenerate(n_samples, gram.n, centered):
        warn_few_samples(n_samples, gram.n_x, gram.n_y, centered)
    if centered:
        matrix = centered_matrix(gram)
    if choose_engine(engine, device) == "torch":
        return torch_engine(matrix, gram.n_x, n_samples, dead_tol, device)
    return _core.MatchEngine(matrix, gram.n_x, n_samples, dead_tol, 0.0, num_threads)


def engine_name(engine: Any) -> str:
    """``"torch"`` or ``"core"``: which engine ``engine`` (from :func:`engine_of`) is."""
    return str(getattr(engine, "name", "core"))


def warn_few_samples(n_samples: int, n_x: int, n_y: int, centered: bool = False) -> None:
    """FewSamplesWarning: with n_samples <= n_x + n_y (n_samples - 1 for the centred match) the
    similarity is inflated."""
    bound = "n_samples - 1 <= n_x + n_y (centred)" if centered else "n_samples <= n_x + n_y"
    _diagnostics.warn(
        f"{n_samples} samples for {n_x} + {n_y} neurons: with {bound}, one "
        "layer's span can hold the other layer's neurons whatever the networks compute "
        "(n_samples independent neurons span every vector), so the similarity is inflated; "
        "use many more samples than neurons",
        FewSamplesWarning,
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
    mask: np.ndarray,
    dead: np.ndarray,
    gram: LayerSizes,
    eps: float,
    count_dead: bool,
    centered: bool = False,
    engine: str = "core",
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
        centered=bool(centered),
        engine=engine,
    )


@overload
def max_match(
    gram: Gram,
    eps: Eps,
    /,
    *,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
    engine: Engine = ...,
    device: Any = ...,
) -> MatchResult: ...
@overload
def max_match(
    gram: Gram,
    eps: EpsSequence,
    /,
    *,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
    engine: Engine = ...,
    device: Any = ...,
) -> list[MatchResult]: ...
@overload
def max_match(
    X: Activations,
    Y: Activations,
    eps: Eps,
    *,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
    engine: Engine = ...,
    device: Any = ...,
) -> MatchResult: ...
@overload
def max_match(
    X: Activations,
    Y: Activations,
    eps: EpsSequence,
    *,
    dead_tol: float | None = ...,
    count_dead: bool = ...,
    num_threads: int | None = ...,
    centered: bool = ...,
    engine: Engine = ...,
    device: Any = ...,
) -> list[MatchResult]: ...
def max_match(
    X: Activations | Gram,
    Y: Activations | Eps | EpsSequence = None,
    eps: Eps | EpsSequence | None = None,
    *,
    dead_tol: float | None = None,
    count_dead: bool = True,
    num_threads: int | None = None,
    centered: bool = False,
    engine: Engine = "auto",
    device: Any = None,
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
        Or, in place of both, a :class:`Gram` accumulated beforehand: ``max_match(gram, eps)``.
    eps : float or sequence of floats in [0, 1]
        Relative error. A sequence gives a list of results from one Gram pass and one peeling.
    dead_tol : float, optional
        A neuron is dead when ``G_vv <= dead_tol * max G_uu`` over its own layer (default
        1e-20: zero vectors up to rounding); in [0, 1). Dead neurons are never matched.
    count_dead : bool
        Count dead neurons in the similarity's denominator (the authors' convention).
    num_threads : int, optional
        Threads for the core (default: all cores of this process; more are capped at that,
        see :func:`nsm._validation.check_threads`).
    centered : bool
        The centred match: remove each neuron's mean over the samples before matching (from
        the Gram's column sums, no second pass; docs/method.md, "The centred match"). It is
        the match that ignores what the next layer's bias absorbs: equivalently the constant
        vector joins both spans. A neuron constant over the samples counts as dead.
    engine : {"auto", "core", "torch"}
        Which engine peels: the C++ core, or the torch engine (float64 on ``device``; needs
        torch) with the same rules and results (docs/method.md, "The torch engine").
        ``"auto"`` takes the torch engine when ``device`` is a GPU, else the core. The result's
        ``engine`` says which one ran.
    device : torch.device or str, optional
        The device of the torch engine (default: the CPU, where a Gram lives); not the CPU
        only with ``engine="torch"`` or ``"auto"``.

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
    (eps,) = split_gram_form("max_match", X, Y, (eps,), ", eps")
    eps_list, single = check_eps(eps)
    count_dead = check_bool(count_dead, "count_dead")
    centered = check_bool(centered, "centered")
    engine_checked, device = check_engine(engine, device)
    gram = resolve_gram("max_match", X, Y, num_threads=threads, form=", eps", shifted=True)
    peeler = engine_of(gram, dead_tol, threads, centered=centered, engine=engine_checked, device=device)
    masks = peeler.max_match(eps_list)
    dead = peeler.dead
    name = engine_name(peeler)
    results = [
        result_from_mask(masks[i], dead, gram, e, count_dead, centered, name) for i, e in enumerate(eps_list)
    ]
    return results[0] if single else results


def ratios(
    X: Activations | Gram,
    Y: Activations | None = None,
    *,
    dead_tol: float | None = None,
    num_threads: int | None = None,
    centered: bool = False,
) -> Ratios:
    """Each neuron's ratio against the whole other layer: ``ratios(X, Y)`` or ``ratios(gram)``.

    The ratio of neuron v is ``dist(z_v, span(other layer)) / ||z_v||``, the sine of the angle
    between its activation vector and the other layer's span. See :class:`Ratios` for dead
    neurons.

    Parameters
    ----------
    X, Y : array-like, or a Gram in place of both
        As for :func:`nsm.max_match`.
    dead_tol, num_threads, centered
        As for :func:`nsm.max_match` (with ``centered`` the ratios of the centred neurons
        against the centred spans).

    Examples
    --------
    >>> import numpy as np, nsm
    >>> r = nsm.ratios(np.array([[1.0], [1.0], [0.0]]), np.array([[1.0], [0.0], [0.0]]))
    >>> round(float(r.x[0]), 8)
    0.70710678
    """
    threads = check_threads(num_threads)
    centered = check_bool(centered, "centered")
    gram = resolve_gram("ratios", X, Y, num_threads=threads)
    # No FewSamplesWarning: the ratios are exact whatever the number of samples.
    engine = engine_of(gram, dead_tol, threads, centered=centered, warn=False)
    r = engine.ratios()
    return Ratios(x=_frozen(r[: gram.n_x].copy()), y=_frozen(r[gram.n_x :].copy()))
