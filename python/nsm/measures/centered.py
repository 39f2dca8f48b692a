"""The centred measures' machinery: each layer's centred block from the Gram's column sums,
its decompositions made once per site (``_Centered``, :class:`SharedCentering` for the sites of a
grid side by side), the registry of measures (:data:`REGISTRY`: how a pair combines what its
sites prepared), and :func:`centered_measures`, which computes any of them for a pair."""

from __future__ import annotations

import hashlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .. import _diagnostics
from .._diagnostics import FewSamplesWarning, NsmWarning
from .._validation import DEFAULT_DEAD_TOL
from ..gram import Gram, rank_cutoff

#: Warnings kept as data, (message, category), for the caller to emit: threads computing
#: measures side by side must not touch the process-wide warnings state.
Notes = list[tuple[str, type[Warning]]]


def _say(message: str, category: type[Warning], notes: Notes | None) -> None:
    """Warn (at the user's line), or keep the warning in ``notes``."""
    if notes is None:
        _diagnostics.warn(message, category)
    else:
        notes.append((message, category))


def _no_variance(function: str, name: str, which: str, notes: Notes | None) -> float:
    _say(
        f"{function}: layer {name!r} ({which}) has no variance across the samples (every "
        "neuron is dead or constant), so the measure is undefined: NaN",
        NsmWarning,
        notes,
    )
    return math.nan


def _few_samples(function: str, sizes: tuple[int, int, int], notes: Notes | None) -> None:
    n_samples, n_x, n_y = sizes
    if n_samples <= n_x + n_y:
        _say(
            f"{function}: {n_samples} samples for {n_x} + {n_y} neurons: with "
            "n_samples <= n_x + n_y canonical correlations are forced towards 1; use many "
            "more samples than neurons",
            FewSamplesWarning,
            notes,
        )


class _Side(NamedTuple):
    """One layer's centred block, restricted to its live neurons."""

    live: np.ndarray  # indices of the live neurons within the layer
    scale: np.ndarray  # 1 / uncentred norm of each live neuron
    centered: np.ndarray  # Gc restricted to the live neurons (unscaled)


def _side(block: np.ndarray, sums: np.ndarray, d: int) -> _Side:
    """The centred side of a layer from its own block of a Gram (``block``, its column sums
    ``sums``, ``d`` samples), restricted to its live neurons."""
    g = np.diag(block)
    live = np.flatnonzero((g > DEFAULT_DEAD_TOL * g.max()) & (g > 0))
    centered = block[np.ix_(live, live)] - np.outer(sums[live], sums[live]) / d
    return _Side(live, 1.0 / np.sqrt(g[live]), centered)


class _Centered:
    """The centred Gram of two layers, split into its blocks, and the rank cutoff. Each side's
    eigen-decompositions are computed once; ``caches`` (one dict per side, or None) keep them
    across pairs, keyed by ``keys`` (one per side: what identifies the side's block, such as its
    place in a grid's Gram) or, without a key, by a digest of the side's block, so a site
    compared with many others is decomposed once."""

    def __init__(
        self,
        x: _Side,
        y: _Side,
        cross: np.ndarray,
        tol: float,
        caches: tuple[dict | None, dict | None] = (None, None),
        keys: tuple[Any, Any] = (None, None),
    ) -> None:
        self.x, self.y, self.cross, self.tol = x, y, cross, tol
        self._caches = {
            id(self.x): caches[0] if caches[0] is not None else {},
            id(self.y): caches[1] if caches[1] is not None else {},
        }
        self._keys: dict[int, Any] = {
            id(side): (key, repr(tol)) for side, key in ((x, keys[0]), (y, keys[1])) if key is not None
        }

    @classmethod
    def of_gram(cls, gram: Gram, caches: tuple[dict | None, dict | None] = (None, None)) -> _Centered:
        """The two layers of a pair's Gram."""
        source, a, b = _WholeGram(gram), (0, gram.n_x), (gram.n_x, gram.n)
        x, y = (_side(source.block(r, r), source.sums(r), gram.n_samples) for r in (a, b))
        return _pair(source, a, b, x, y, caches)

    def _cached(self, side: _Side, what: tuple, compute: Any) -> np.ndarray:
        if id(side) not in self._keys:
            h = hashlib.blake2b(digest_size=20)
            for a in (side.live, side.scale, side.centered):
                h.update(np.ascontiguousarray(a).tobytes())
            self._keys[id(side)] = h.digest() + repr(self.tol).encode()
        cache = self._caches[id(side)]
        key = (*what, self._keys[id(side)])
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    def has_variance(self, side: _Side) -> bool:
        """Any direction above the cutoff? (The largest scaled centred variance bounds them.)"""
        if len(side.live) == 0:
            return False
        scaled_diag = np.diag(side.centered) * side.scale**2
        return bool(scaled_diag.max() > self.tol)

    def whitener(self, side: _Side) -> np.ndarray:
        """W (live × rank) with Wᵀ Gc W = I over the directions above the cutoff."""

        def compute() -> np.ndarray:
            scaled = side.centered * np.outer(side.scale, side.scale)
            lam, vec = np.linalg.eigh(scaled)
            keep = lam > self.tol * max(1.0, float(lam[-1]))
            return (side.scale[:, None] * vec[:, keep]) / np.sqrt(lam[keep])

        return self._cached(side, ("whitener",), compute)

    def principal(self, side: _Side, keep: float) -> np.ndarray:
        """W (live × k) whitening the fewest principal directions of Gc that explain at least
        ``keep`` of its variance (never more directions than the rank the cutoff gives)."""

        def compute() -> np.ndarray:
            lam, vec = np.linalg.eigh(side.centered)
            lam, vec = lam[::-1], vec[:, ::-1]
            rank = int(np.sum(lam > self.tol * max(float(lam[0]), 0.0)))
            rank = min(rank, self.whitener(side).shape[1])
            lam = lam[:rank]
            k = int(np.searchsorted(np.cumsum(lam), keep * lam.sum(), side="left")) + 1
            k = max(1, min(k, rank))
            return vec[:, :k] / np.sqrt(lam[:k])

        return self._cached(side, ("principal", keep), compute)


Range = tuple[int, int]


class GramBlocks(ABC):
    """Some blocks of the Gram of many layers side by side (layer ``k`` is neurons
    ``lo:hi``): at least each layer's own block and the blocks of the pairs that are measured.
    :func:`nsm.torch.compare_all` keeps only those (``nsm.torch.site_blocks``); a whole
    :class:`nsm.Gram` has them all (:meth:`of_gram`)."""

    n_samples: int
    precision: str

    @abstractmethod
    def block(self, rows: Range, cols: Range) -> np.ndarray:
        """``G[rows, cols]`` (a read-only array), for a layer's own range twice or a measured
        pair's two ranges; other blocks may raise ValueError."""

    @abstractmethod
    def sums(self, where: Range) -> np.ndarray:
        """The column sums of the neurons ``where``."""

    @staticmethod
    def of_gram(gram: Gram) -> GramBlocks:
        """Every block of a whole Gram."""
        return _WholeGram(gram)


class _WholeGram(GramBlocks):
    def __init__(self, gram: Gram) -> None:
        self._G, self._s = gram.matrix, gram.column_sums
        self.n_samples, self.precision, self._n = gram.n_samples, gram.precision, gram.n

    def block(self, rows: Range, cols: Range) -> np.ndarray:
        for lo, hi in (rows, cols):
            if not 0 <= lo < hi <= self._n:
                raise ValueError(f"layer range {(lo, hi)} is not within the Gram's {self._n} neurons")
        return self._G[rows[0] : rows[1], cols[0] : cols[1]]

    def sums(self, where: Range) -> np.ndarray:
        return self._s[where[0] : where[1]]


def _pair(
    source: GramBlocks,
    a: Range,
    b: Range,
    x: _Side,
    y: _Side,
    caches: tuple[dict | None, dict | None] = (None, None),
    keys: tuple[Any, Any] = (None, None),
) -> _Centered:
    """The centred pair of layers ``a`` (side ``x``) and ``b`` (side ``y``) of ``source``: their
    centred cross block and the rank cutoff of a Gram of the two layers."""
    d = source.n_samples
    sa, sb = source.sums(a)[x.live], source.sums(b)[y.live]
    cross = source.block(a, b)[np.ix_(x.live, y.live)] - np.outer(sa, sb) / d
    # The engine's rank cutoff, or the mixed pass's rounding: below it a direction is rounding,
    # not variance (the same cutoff finds constant neurons for the centred match).
    tol = rank_cutoff(d, (a[1] - a[0]) + (b[1] - b[0]), source.precision)
    return _Centered(x, y, cross, tol, caches, keys)


class SharedCentering:
    """The centred blocks of layers that lie side by side in one Gram (the Gram of a grid of
    :func:`nsm.torch.compare_all`): each layer's centred block and eigen-decompositions are made
    once, however many pairs it is in, and a pair's cross block is cut out when asked. The
    values are those of the pair's own Gram cut out of the whole.

    Parameters
    ----------
    source : Gram or GramBlocks
        The Gram holding every layer (its X/Y split is not used: layers are given by ranges),
        or the blocks of it that are kept.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.measures import SharedCentering
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.random((500, 3)), rng.random((500, 4))
    >>> shared = SharedCentering(nsm.Gram.from_arrays(A, B))
    >>> v = shared.measures((0, 3), (3, 7), ("linear_cka",), 0.99, ("a", "b"))["linear_cka"]
    >>> bool(np.isclose(v, nsm.measures.linear_cka(A, B)))
    True
    """

    def __init__(self, source: Gram | GramBlocks) -> None:
        if source.n_samples == 0:
            raise ValueError("gram has no samples: update it with activations first")
        self._source = GramBlocks.of_gram(source) if isinstance(source, Gram) else source
        self._d = source.n_samples
        self._sides: dict[Range, tuple[_Side, dict]] = {}
        self._lock = threading.Lock()

    def _side_of(self, where: Range) -> tuple[_Side, dict]:
        """A layer's side and the cache of its decompositions, made once (under a lock: threads
        share them)."""
        with self._lock:
            if where not in self._sides:
                side = _side(self._source.block(where, where), self._source.sums(where), self._d)
                self._sides[where] = (side, {})
            return self._sides[where]

    def measures(
        self,
        a: Range,
        b: Range,
        which: tuple[str, ...],
        keep: float,
        names: tuple[str, str],
        notes: Notes | None = None,
    ) -> dict[str, float]:
        """The centred measures named in ``which`` of layer ``a`` (neurons ``a[0]:a[1]`` of the
        Gram, the X side) against layer ``b``, as :func:`linear_cka` and the others give them
        from the pair's own Gram. With ``notes`` (a list), warnings are appended to it as
        ``(message, category)`` instead of emitted. Threads may call it side by side."""
        (x, cache_x), (y, cache_y) = self._side_of(a), self._side_of(b)
        c = _pair(self._source, a, b, x, y, (cache_x, cache_y), (a, b))
        return _measures_of(c, (self._d, a[1] - a[0], b[1] - b[0]), which, keep, names, notes)


def centered_measures(
    gram: Gram,
    which: tuple[str, ...],
    keep: float,
    names: tuple[str, str],
    caches: tuple[dict | None, dict | None] = (None, None),
) -> dict[str, float]:
    """The centred measures named in ``which`` (of :data:`MEASURES` but ``match_auc``) of a
    Gram, sharing one centring and eigen-decompositions (and, with ``caches``, the
    decompositions of sites seen before): what a grid calls per pair. No jackknife; ``names``
    name the layers in warnings.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.measures import centered_measures
    >>> X = np.random.default_rng(0).random((300, 3))
    >>> out = centered_measures(nsm.Gram.from_arrays(X, 2 * X), ("cca", "procrustes"), 0.99, ("a", "b"))
    >>> {k: round(v, 6) for k, v in out.items()}
    {'cca': 1.0, 'procrustes': 1.0}
    """
    sizes = (gram.n_samples, gram.n_x, gram.n_y)
    return _measures_of(_Centered.of_gram(gram, caches), sizes, which, keep, names)


def _linear_cka(c: _Centered, keep: float) -> float:
    cross = float(np.sum(c.cross**2))
    return cross / (float(np.linalg.norm(c.x.centered)) * float(np.linalg.norm(c.y.centered)))


def _cca(c: _Centered, keep: float) -> float:
    # Σ ρ² is the squared Frobenius norm of the whitened cross block: no SVD needed.
    wx, wy = c.whitener(c.x), c.whitener(c.y)
    total = float(np.sum((wx.T @ c.cross @ wy) ** 2))
    return min(total / min(wx.shape[1], wy.shape[1]), 1.0)


def _svcca(c: _Centered, keep: float) -> float:
    wx, wy = c.principal(c.x, keep), c.principal(c.y, keep)
    rho = np.minimum(np.linalg.svd(wx.T @ c.cross @ wy, compute_uv=False), 1.0)
    return float(np.sum(rho) / min(wx.shape[1], wy.shape[1]))


def _procrustes(c: _Centered, keep: float) -> float:
    nuclear = float(np.linalg.svd(c.cross, compute_uv=False).sum())
    norm = math.sqrt(max(float(np.trace(c.x.centered)), 0.0) * max(float(np.trace(c.y.centered)), 0.0))
    return min(nuclear / norm, 1.0)


class CenteredMeasure(NamedTuple):
    """A standard measure of the centred Gram, registered once in :data:`REGISTRY`.

    ``combine(pair, keep)`` computes it for a pair from its centred blocks; what it needs of
    each site (its whitener, its principal directions) is prepared once per site and shared
    by every pair the site is in. Measures of one ``family`` share those decompositions and a
    grid computes them together; ``forced_by_few_samples`` marks the canonical-correlation
    kind, which tends to 1 when ``n_samples <= n_x + n_y`` (a FewSamplesWarning)."""

    name: str
    title: str
    family: str
    combine: Callable[[_Centered, float], float]
    forced_by_few_samples: bool


#: The centred measures by name: what :func:`centered_measures`, a grid's matrices and the
#: heatmaps' titles read.
REGISTRY: dict[str, CenteredMeasure] = {
    m.name: m
    for m in (
        CenteredMeasure("linear_cka", "Linear CKA", "linear_cka", _linear_cka, False),
        CenteredMeasure("cca", "Mean squared canonical correlation (R²_CCA)", "decompositions", _cca, True),
        CenteredMeasure(
            "svcca",
            "SVCCA (mean canonical correlation of the top directions)",
            "decompositions",
            _svcca,
            True,
        ),
        CenteredMeasure(
            "procrustes",
            "Procrustes similarity (cosine of the angular distance)",
            "decompositions",
            _procrustes,
            False,
        ),
    )
}


def family(measure: str) -> tuple[str, ...]:
    """The centred measures computed together with ``measure`` (they share its decompositions).

    Examples
    --------
    >>> from nsm.measures import family
    >>> family("svcca")
    ('cca', 'svcca', 'procrustes')
    """
    kin = REGISTRY[measure].family
    return tuple(m.name for m in REGISTRY.values() if m.family == kin)


def _measures_of(
    c: _Centered,
    sizes: tuple[int, int, int],
    which: tuple[str, ...],
    keep: float,
    names: tuple[str, str],
    notes: Notes | None = None,
) -> dict[str, float]:
    """The centred measures named in ``which`` of the pair ``c`` (``sizes``: its samples and
    the two layers' widths, for the warnings; kept in ``notes`` when given)."""
    unknown = [m for m in which if m not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown centred measure {unknown[0]!r}: one of {', '.join(REGISTRY)}")
    for side, name, label in ((c.x, names[0], "X"), (c.y, names[1], "Y")):
        if not c.has_variance(side):
            return dict.fromkeys(which, _no_variance("/".join(which), name, label, notes))
    forced = [m for m in which if REGISTRY[m].forced_by_few_samples]
    if forced:
        _few_samples(forced[0], sizes, notes)
    return {m: REGISTRY[m].combine(c, keep) for m in which}
