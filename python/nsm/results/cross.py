"""Every site of network A against every site of network B: one Gram per pair, any measure as a
matrix. Needs no torch: ``nsm.torch.compare_all`` builds it, ``load`` reads it back."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np

from .. import _diagnostics
from .._blas_threads import one_blas_thread
from .._validation import check_bool, check_eps, check_keep, check_sites, default_threads, single_eps
from ..gram import Gram
from ..jackknife import Estimate, jackknife_se, quiet_leave_out
from ..match.engines import Engine, check_engine, choose_engine, core_threads
from ..match.maximum import warn_few_samples
from ..match.thresholds import Thresholds, gram_thresholds, match_thresholds
from ..measures import MEASURES, REGISTRY, Notes, SharedCentering, centered_measures, family, match_auc
from . import io, tables
from .comparison import DEFAULT_EPS, LayerComparison

__all__ = ["MATRIX_MEASURES", "CrossComparison", "SharedGrams"]

#: What :meth:`CrossComparison.matrix` draws: the measures of :mod:`nsm.measures`, the
#: similarity at one ε, and the similarity minus the baseline's at one ε.
MATRIX_MEASURES = MEASURES + ("similarity", "similarity_gap")

Pair = tuple[str, str]
_UNREAD = object()  # "not read yet", beside None ("no baseline")
#: Where a pair lies in a larger Gram: its SharedCentering and the two sites' neuron ranges.
SharedBlock = tuple[SharedCentering, tuple[int, int], tuple[int, int]]


class SharedGrams(Mapping):
    """A mapping ``{(site_a, site_b): Gram or None}`` whose Grams are blocks of larger Grams
    (the grids of :func:`nsm.torch.compare_all`). :meth:`shared_block` tells where a pair lies,
    so that :class:`CrossComparison` computes the centred measures without cutting the pair's
    Gram out and does each site's own work (its centring, eigen-decompositions) once."""

    @abstractmethod
    def shared_block(self, pair: Pair) -> SharedBlock | None:
        """The larger Gram's :class:`nsm.measures.SharedCentering` and the neuron ranges of the
        pair's two sites in it (site_a's first), or None to use the pair's own Gram."""


class CrossComparison:
    """Every site of network A against every site of network B.

    Each pair ``(site_a, site_b)`` holds the Gram of the two sites' activations on shared
    samples (or None when the pair could not share samples, with the reason), its thresholds
    (every neuron's critical ε, computed when first needed) and optionally a baseline Gram
    (the same statistics with the pairing of samples broken). Measures are computed lazily,
    once, and kept.

    Parameters
    ----------
    sites_a, sites_b : list of str
        The sites of A (rows of every matrix) and of B (columns), in order.
    grams : mapping {(site_a, site_b): Gram or None}
        One entry for every pair of ``sites_a × sites_b``; the Gram's X side is site_a's
        neurons. None: the pair could not be compared (give the reason in ``reasons``).
    reasons : mapping {(site_a, site_b): str}, optional
        Why each None pair could not be compared (required for every None pair).
    baselines : mapping {(site_a, site_b): Gram or None}, optional
        Baseline Grams of compared pairs (same sizes as the pair's Gram); missing or None:
        no baseline (``similarity_gap`` is then NaN).
    eps : sequence of float
        The ε values of tables and saved reports (every ε is available from the thresholds).
    keep : float
        SVCCA's fraction of variance kept (see :func:`nsm.measures.svcca`).
    count_dead : bool
        Whether dead neurons count in the similarity's denominator.
    info : mapping, optional
        JSON-serialisable facts about how the Grams were made (for example
        ``{"samples": "pool"}``); saved and loaded unchanged.
    centered : bool
        Thresholds (and so the similarity and ``match_auc``) of the centred match
        (:func:`nsm.max_match`'s ``centered``); the other measures are centred anyway.
    engine, device
        The engine of the pairs' thresholds and its device, as for :func:`nsm.match_thresholds`
        (``nsm.torch.compare_all`` passes its own).
    saved_pairs : set of (site_a, site_b), optional
        For a comparison read from a file (:meth:`from_dict`): the compared pairs whose Grams
        are at hand; the others are None in ``grams`` and use their saved values. None (the
        default): every compared pair has its Gram.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> from nsm.results import CrossComparison
    >>> rng = np.random.default_rng(0)
    >>> a = {"a1": rng.random((400, 6)), "a2": rng.random((400, 5))}
    >>> b = {"b1": a["a1"] @ rng.random((6, 6)), "tok": None}
    >>> grams = {(sa, "b1"): nsm.Gram.from_arrays(a[sa], b["b1"]) for sa in a}
    >>> grams.update({(sa, "tok"): None for sa in a})
    >>> cc = CrossComparison(list(a), ["b1", "tok"], grams,
    ...                      reasons={(sa, "tok"): "token site against a spatial site" for sa in a})
    >>> cc.matrix("cca").round(3)
    array([[1.   ,   nan],
           [0.018,   nan]])
    >>> cc.pair("a1", "b1").similarity(0.01)
    1.0
    """

    def __init__(
        self,
        sites_a: Sequence[str],
        sites_b: Sequence[str],
        grams: Mapping[Pair, Gram | None],
        *,
        reasons: Mapping[Pair, str] | None = None,
        baselines: Mapping[Pair, Gram | None] | None = None,
        eps: Sequence[float] = DEFAULT_EPS,
        keep: float = 0.99,
        count_dead: bool = True,
        info: Mapping[str, Any] | None = None,
        centered: bool = False,
        saved_pairs: set[Pair] | None = None,
        engine: Engine = "core",
        device: Any = None,
    ) -> None:
        self.sites_a = check_sites(sites_a, "sites_a")
        self.sites_b = check_sites(sites_b, "sites_b")
        eps_values, _ = check_eps(list(eps))
        self.eps = tuple(eps_values)
        self.keep = check_keep(keep)
        self.count_dead = check_bool(count_dead, "count_dead")
        self.centered = check_bool(centered, "centered")
        self.info = dict(info or {})
        # The engine of the pairs' thresholds and its device.
        self._engine: tuple[Engine, Any] = (cast(Engine, check_engine(engine, device)[0]), device)
        keys = self._check_pairs(grams, "grams")
        self._reasons: dict[Pair, str] = {}
        for pair, reason in dict(reasons or {}).items():
            self._check_key(pair, "reasons")
            if not isinstance(reason, str) or not reason:
                raise TypeError(f"reasons[{pair}] must be a non-empty str, got {reason!r}")
            self._reasons[pair] = reason
        baselines = {} if baselines is None else baselines
        if not isinstance(baselines, Mapping):
            raise TypeError("baselines must be a mapping {(site_a, site_b): Gram or None}")
        self._baseline_keys = set()
        for pair in baselines:  # keys only: a lazy mapping makes its Grams when read
            self._check_key(pair, "baselines")
            if pair in self._reasons:
                raise ValueError(f"pair {pair} has a baseline but was not compared")
            self._baseline_keys.add(pair)
        # Grams are read when first needed (a mapping may cut them out of a larger Gram on
        # demand); a plain dict is checked now.
        self._grams: Mapping[Pair, Gram | None] = grams
        self._baselines: Mapping[Pair, Gram | None] = baselines
        # None: every compared pair has its Gram.
        self._gram_pairs: set[Pair] | None = None if saved_pairs is None else set(saved_pairs)
        self._checked: set[Pair] = set()
        if isinstance(grams, dict):
            for pair in keys:
                if self._gram_pairs is not None and pair not in self._gram_pairs:
                    continue
                if pair in self._reasons:
                    if grams[pair] is not None:
                        raise ValueError(f"pair {pair} has a Gram and a reason for not being compared")
                else:
                    self._gram(pair)
                    self._baseline(pair)
        self._thresholds: dict[Pair, Thresholds] = {}
        self._base_thresholds: dict[Pair, Thresholds | None] = {}
        self._values: dict[str, dict[Pair, float]] = {}

    def _gram(self, pair: Pair) -> Gram | None:
        """The pair's Gram (checked when first read); None when it was not compared or was
        loaded without it."""
        if pair in self._reasons or (self._gram_pairs is not None and pair not in self._gram_pairs):
            return None
        gram = self._grams[pair]
        if pair not in self._checked:
            if gram is None:
                raise ValueError(
                    f"pair {pair} has no Gram: give the reason it could not be "
                    "compared in reasons[(site_a, site_b)]"
                )
            if not isinstance(gram, Gram):
                raise TypeError(f"grams[{pair}] must be an nsm.Gram or None, got {type(gram).__name__}")
            if gram.n_samples == 0:
                raise ValueError(f"grams[{pair}] has no samples")
            self._checked.add(pair)
        return gram

    def _baseline(self, pair: Pair) -> Gram | None:
        """The pair's baseline Gram, or None (checked against the pair's Gram)."""
        if pair not in self._baseline_keys:
            return None
        base = self._baselines[pair]
        if base is None:
            return None
        if not isinstance(base, Gram):
            raise TypeError(f"baselines[{pair}] must be an nsm.Gram or None, got {type(base).__name__}")
        gram = self._gram(pair)
        if gram is not None and (base.n_x, base.n_y) != (gram.n_x, gram.n_y):
            raise ValueError(
                f"baselines[{pair}] has {base.n_x} + {base.n_y} neurons but the pair's "
                f"Gram has {gram.n_x} + {gram.n_y}"
            )
        return base if base.n_samples else None

    # ---- construction checks ----------------------------------------------------------------

    def _check_key(self, key: Any, name: str) -> Pair:
        if not isinstance(key, tuple) or len(key) != 2:
            raise TypeError(f"{name} must be keyed by (site_a, site_b) pairs, got {key!r}")
        if key[0] not in self.sites_a:
            raise ValueError(f"{name}: {key[0]!r} is not in sites_a")
        if key[1] not in self.sites_b:
            raise ValueError(f"{name}: {key[1]!r} is not in sites_b")
        return key

    def _check_pairs(self, grams: Any, name: str) -> set[Pair]:
        """The keys of ``grams`` (read without reading its values), every pair present."""
        if not isinstance(grams, Mapping):
            raise TypeError(f"{name} must be a mapping {{(site_a, site_b): Gram or None}}")
        keys = set()
        for key in grams:
            keys.add(self._check_key(key, name))
        missing = [(a, b) for a in self.sites_a for b in self.sites_b if (a, b) not in keys]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(
                f"{name} has no entry for {', '.join(map(str, missing[:3]))}{more}: give "
                "every (site_a, site_b) pair a Gram, or None with a reason"
            )
        return keys

    def _site_pair(self, site_a: Any, site_b: Any) -> Pair:
        if site_a not in self.sites_a:
            raise KeyError(f"{site_a!r} is not a site of A (sites_a: {', '.join(self.sites_a)})")
        if site_b not in self.sites_b:
            raise KeyError(f"{site_b!r} is not a site of B (sites_b: {', '.join(self.sites_b)})")
        return site_a, site_b

    # ---- what was compared ------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """``(len(sites_a), len(sites_b))``."""
        return len(self.sites_a), len(self.sites_b)

    @property
    def reasons(self) -> dict[Pair, str]:
        """The pairs that could not be compared, with the reason for each."""
        return dict(self._reasons)

    def compared(self, site_a: str, site_b: str) -> bool:
        """Whether the pair shares samples (has a Gram, or had one when saved)."""
        return self._site_pair(site_a, site_b) not in self._reasons

    def has_grams(self) -> bool:
        """Whether every compared pair has its Gram (False after loading without Grams: the
        measures are then the saved ones)."""
        return self._gram_pairs is None or (
            len(self._gram_pairs) + len(self._reasons) == len(self.sites_a) * len(self.sites_b)
        )

    def thresholds(self, site_a: str, site_b: str) -> Thresholds:
        """Every neuron's critical ε for the pair (computed once)."""
        pair = self._site_pair(site_a, site_b)
        self._require_compared(pair)
        return self._thresholds_of(pair)

    def _thresholds_of(self, pair: Pair, gram: Gram | None = None) -> Thresholds:
        if pair not in self._thresholds:
            gram = self._gram(pair) if gram is None else gram
            engine, device = self._engine
            self._thresholds[pair] = match_thresholds(
                gram, count_dead=self.count_dead, centered=self.centered, engine=engine, device=device
            )
        return self._thresholds[pair]

    def _baseline_thresholds(self, pair: Pair, base: Any = _UNREAD) -> Thresholds | None:
        """The baseline's thresholds (computed once; ``base``: the baseline Gram or None, when
        the caller read it already: a lazy mapping may make it on every read)."""
        if pair not in self._base_thresholds:
            base = self._baseline(pair) if base is _UNREAD else base
            self._base_thresholds[pair] = (
                None
                if base is None
                else match_thresholds(
                    base,
                    count_dead=self.count_dead,
                    centered=self.centered,
                    engine=self._engine[0],
                    device=self._engine[1],
                )
            )
        return self._base_thresholds[pair]

    def _shared_block(self, pair: Pair) -> SharedBlock | None:
        """Where the pair lies in a larger Gram (see :class:`SharedGrams`), or None."""
        if not isinstance(self._grams, SharedGrams) or self._gram_pairs is not None:
            return None
        if pair in self._reasons:
            return None
        return self._grams.shared_block(pair)

    def _fill_thresholds(self, pairs: Sequence[Pair], baseline: bool = False) -> None:
        """Computes the thresholds of ``pairs`` that lack them (with ``baseline``, their
        baselines'), several pairs at once. The engine runs layers this narrow on one thread
        (``engine_threads``: a thread per 1,024 neurons), so pairs share the cores instead;
        a pair wide enough for more threads is computed afterwards, alone, on all of them.
        The values are those of one pair after another. The workers touch no process-wide
        warnings state: the FewSamplesWarning of each starved pair is emitted here, in pair
        order, at the user's line."""
        store: dict[Pair, Any] = self._base_thresholds if baseline else self._thresholds
        todo = [p for p in dict.fromkeys(pairs) if p not in store and p not in self._reasons]
        threads = default_threads()
        on_device = choose_engine(*self._engine) == "torch"  # one device: the pairs take turns
        if len(todo) < 2 or threads < 2 or on_device:
            for pair in todo:
                self._baseline_thresholds(pair) if baseline else self._thresholds_of(pair)
            return

        def narrow(pair: Pair) -> tuple[bool, Thresholds | None]:
            """(whether the pair was computed here, its thresholds)."""
            gram = self._baseline(pair) if baseline else self._gram(pair)
            if gram is None:
                return True, None
            if core_threads(gram.n, threads) > 1:
                return False, None  # read again later: holding wide Grams would cost memory
            return True, gram_thresholds(gram, self.count_dead, self.centered, 1)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(narrow, todo))
        for pair, (done, t) in zip(todo, results):
            if not done:
                self._baseline_thresholds(pair) if baseline else self._thresholds_of(pair)
                continue
            if t is not None and t.degenerate:
                warn_few_samples(t.n_samples, t.n_x, t.n_y, self.centered)
            if baseline or t is not None:
                store[pair] = t

    def _fill_centered(self, measure: str, pairs: Sequence[Pair]) -> None:
        """Computes the centred measures of ``pairs`` that lie in a larger Gram (see
        :class:`SharedGrams`) and lack them, several pairs at once, each decomposition on one
        BLAS thread: these blocks are small, and two BLAS threads on a small SVD were up to six
        times slower than one on a busy machine (README, "Every site against every site").
        Warnings are emitted here, in pair order, pointing at the caller of the public method."""
        group = family(measure)
        done = self._values.get(measure, {})
        todo = [p for p in dict.fromkeys(pairs) if p not in done and self._shared_block(p) is not None]
        if not todo:
            return

        def compute(pair: Pair) -> tuple[dict[str, float], Notes]:
            block = self._shared_block(pair)
            assert block is not None
            shared, range_a, range_b = block
            notes: Notes = []
            return shared.measures(range_a, range_b, group, self.keep, pair, notes), notes

        with one_blas_thread(), ThreadPoolExecutor(max_workers=default_threads()) as pool:
            results = list(pool.map(compute, todo))
        for pair, (values, notes) in zip(todo, results):
            for message, category in notes:
                _diagnostics.warn(message, category)
            for m in group:
                self._values.setdefault(m, {})[pair] = values[m]

    def _require_groups(self, pair: Pair) -> Thresholds:
        """The pair's thresholds, which must keep jackknife groups."""
        t = self._thresholds_of(pair)
        if t.leave_out is None:
            raise ValueError(
                f"matrix(..., se=True) needs jackknife groups, but the pair {pair} kept none: "
                "pass groups= to nsm.torch.compare_all (or build the Grams with groups=K)"
            )
        return t

    def _compared_pairs(self) -> list[Pair]:
        return [(a, b) for a in self.sites_a for b in self.sites_b if (a, b) not in self._reasons]

    def _require_compared(self, pair: Pair) -> None:
        if pair in self._reasons:
            raise ValueError(f"pair {pair} was not compared: {self._reasons[pair]}")

    def pair(self, site_a: str, site_b: str) -> LayerComparison:
        """The pair as a :class:`nsm.LayerComparison`, the object a layer of
        ``nsm.torch.compare`` is: thresholds, ``max_match``, ``similarity``, baseline, Gram.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import CrossComparison
        >>> X = np.random.default_rng(0).random((300, 4))
        >>> cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X[:, :2])})
        >>> cc.pair("a", "b").max_match(0.0).y.tolist()
        [0, 1]
        """
        pair = self._site_pair(site_a, site_b)
        self._require_compared(pair)
        # Each Gram is read once here: a lazy mapping may make it on every read.
        gram, base = self._gram(pair), self._baseline(pair)
        self._baseline_thresholds(pair, base)
        return LayerComparison(
            pair,
            self._thresholds_of(pair, gram),
            self._base_thresholds[pair],
            self.eps,
            gram=gram,
            baseline_gram=base,
        )

    # ---- measures ---------------------------------------------------------------------------

    def _value(self, measure: str, pair: Pair, caches: tuple = (None, None)) -> float:
        cache = self._values.setdefault(measure, {})
        if pair in cache:
            return cache[pair]
        if measure == "match_auc":
            cache[pair] = _auc_or_nan(self._thresholds_of(pair), pair)
        else:
            group = family(measure)
            block = self._shared_block(pair)
            if block is not None:
                shared, range_a, range_b = block
                values = shared.measures(range_a, range_b, group, self.keep, pair)
            else:
                gram = self._gram(pair)
                if gram is None:
                    raise ValueError(
                        f"{measure} of {pair} needs the pair's Gram, and this comparison was "
                        "loaded without it and without that measure"
                    )
                values = centered_measures(gram, group, self.keep, pair, caches)
            for m in group:
                self._values.setdefault(m, {})[pair] = values[m]
        return cache[pair]

    def _similarity(self, pair: Pair, eps: float, gap: bool) -> float:
        sim = float(self.thresholds(*pair).similarity(eps))
        if not gap:
            return sim
        base = self._baseline_thresholds(pair)
        return math.nan if base is None else sim - float(base.similarity(eps))

    def matrix(self, measure: str, eps: float | None = None, *, se: bool = False) -> np.ndarray:
        """One number per pair: a ``(len(sites_a), len(sites_b))`` float64 array, rows = sites
        of A; NaN where the pair could not be compared (see :attr:`reasons`) or the measure is
        undefined (a site with no variance, with an NsmWarning).

        With ``se=True``, the jackknife standard error of each value instead (the Grams must
        keep groups: ``nsm.torch.compare_all(..., groups=K)``; the values stay the full-data
        ones); not for ``"similarity_gap"``, whose baseline keeps no groups. Computed from
        the Grams (K more evaluations per pair), so not after loading without them, except
        for ``match_auc`` and ``similarity``, which come from the saved thresholds.

        Parameters
        ----------
        measure : str
            ``"linear_cka"``, ``"cca"``, ``"svcca"``, ``"procrustes"``, ``"match_auc"`` (see
            :mod:`nsm.measures`), ``"similarity"`` (the maximum-match similarity at ``eps``) or
            ``"similarity_gap"`` (the similarity minus the baseline's at ``eps``; NaN for pairs
            without a baseline).
        eps : float, optional
            The ε of ``"similarity"`` and ``"similarity_gap"``; only for those.
        se : bool
            Standard errors instead of values (see above).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import CrossComparison
        >>> X = np.random.default_rng(0).random((300, 4))
        >>> cc = CrossComparison(["a"], ["b", "c"], {("a", "b"): nsm.Gram.from_arrays(X, X),
        ...                                          ("a", "c"): nsm.Gram.from_arrays(X, X[:, :1])})
        >>> cc.matrix("similarity", eps=0.0)
        array([[1. , 0.4]])
        """
        if measure not in MATRIX_MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MATRIX_MEASURES)}, got {measure!r}")
        needs_eps = measure in ("similarity", "similarity_gap")
        if needs_eps:
            if eps is None:
                raise ValueError(f"measure {measure!r} needs an eps in [0, 1]: matrix({measure!r}, eps=0.5)")
            e = single_eps(eps, f"matrix({measure!r}) takes one eps; call it once per ε")
        elif eps is not None:
            raise ValueError(f"measure {measure!r} takes no eps (only 'similarity' and 'similarity_gap' do)")
        if check_bool(se, "se"):
            return self._se_matrix(measure, e if needs_eps else None)
        if measure in REGISTRY:
            self._fill_centered(measure, self._compared_pairs())
        if measure in ("match_auc", "similarity", "similarity_gap"):
            self._fill_thresholds(self._compared_pairs())
        if measure == "similarity_gap":
            self._fill_thresholds(self._compared_pairs(), baseline=True)
        out = np.full(self.shape, np.nan)
        # A site's eigen-decompositions are reused across the pairs it is in, when its block
        # of the Gram is the same (the same samples): B's for the whole call, A's for a row.
        cache_b: dict = {}
        for i, a in enumerate(self.sites_a):
            caches: tuple[dict, dict] = ({}, cache_b)
            for j, b in enumerate(self.sites_b):
                if (a, b) in self._reasons:
                    continue
                if needs_eps:
                    out[i, j] = self._similarity((a, b), e, measure == "similarity_gap")
                else:
                    out[i, j] = self._value(measure, (a, b), caches)
        return out

    def _se_matrix(self, measure: str, eps: float | None) -> np.ndarray:
        """The jackknife standard error of ``measure`` for every compared pair."""
        if measure == "similarity_gap":
            raise ValueError(
                "se=True is not available for 'similarity_gap': the baseline keeps no jackknife "
                "groups; ask for matrix('similarity', eps=..., se=True)"
            )
        out = np.full(self.shape, np.nan)
        compared = self._compared_pairs()
        if compared:  # before computing every pair: a comparison without groups says so now
            self._require_groups(compared[0])
        self._fill_thresholds(compared)
        for i, a in enumerate(self.sites_a):
            for j, b in enumerate(self.sites_b):
                pair = (a, b)
                if pair in self._reasons:
                    continue
                t = self._require_groups(pair)
                if measure == "similarity":
                    out[i, j] = t.similarity_se(eps)
                elif measure == "match_auc":
                    estimate = match_auc(t, names=pair)
                    assert isinstance(estimate, Estimate)
                    out[i, j] = estimate.se
                else:
                    gram = self._gram(pair)
                    if gram is None:
                        raise ValueError(
                            f"the se of {measure} of {pair} needs the pair's Gram, and this "
                            "comparison was loaded without it: save with grams=True"
                        )

                    def compute(g: Gram, pair: Pair = pair) -> float:
                        return centered_measures(g, family(measure), self.keep, pair)[measure]

                    out[i, j] = jackknife_se(quiet_leave_out(compute, gram.leave_one_out()))
        return out

    # ---- tables -----------------------------------------------------------------------------

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per pair (long format), rows of A first: ``site_a``, ``site_b``,
        ``compared``, ``centered``, sizes, ``few_samples`` (a starved pair:
        :func:`nsm.starved.starved`), every measure, the baseline's ``match_auc``, the
        similarity and the baseline's at each ε, and ``reason`` (empty for compared pairs).
        Computes every measure.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import CrossComparison
        >>> X = np.random.default_rng(0).random((300, 4))
        >>> cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X)}, eps=[0.5])
        >>> sorted(cc.to_rows()[0])[:7]
        ['baseline_0.5', 'baseline_match_auc', 'cca', 'centered', 'compared', 'few_samples', 'linear_cka']
        """
        rows = []
        for measure in ("linear_cka", "cca"):
            self._fill_centered(measure, self._compared_pairs())
        self._fill_thresholds(self._compared_pairs())
        self._fill_thresholds(self._compared_pairs(), baseline=True)
        cache_b: dict = {}
        for a in self.sites_a:
            caches: tuple[dict, dict] = ({}, cache_b)
            for b in self.sites_b:
                pair = (a, b)
                row: dict[str, Any] = {"site_a": a, "site_b": b, "compared": pair not in self._reasons}
                row["centered"] = self.centered
                row["precision"] = self.info.get("precision")
                if pair in self._reasons:
                    row.update({"n_a": None, "n_b": None, "n_samples": None, "few_samples": None})
                    row.update(dict.fromkeys(MEASURES + ("baseline_match_auc",), math.nan))
                    for e in self.eps:
                        row[f"similarity_{e:g}"] = row[f"baseline_{e:g}"] = math.nan
                    row["reason"] = self._reasons[pair]
                    rows.append(row)
                    continue
                t = self.thresholds(a, b)
                row.update({"n_a": t.n_x, "n_b": t.n_y, "n_samples": t.n_samples})
                row["few_samples"] = t.starved
                for m in MEASURES:
                    row[m] = self._value(m, pair, caches)
                base = self._baseline_thresholds(pair)
                row["baseline_match_auc"] = math.nan if base is None else _auc_or_nan(base, pair)
                for e in self.eps:
                    row[f"similarity_{e:g}"] = float(t.similarity(e))
                    row[f"baseline_{e:g}"] = math.nan if base is None else float(base.similarity(e))
                row["reason"] = ""
                rows.append(row)
        return rows

    def to_csv(self, path: Any) -> None:
        """Write :meth:`to_rows` as CSV (NaN as ``nan``)."""
        tables.write_csv(self.to_rows(), path)

    def to_pandas(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (needs pandas)."""
        return tables.to_dataframe(self.to_rows())

    def __repr__(self) -> str:
        skipped = f", {len(self._reasons)} not compared" if self._reasons else ""
        return f"CrossComparison({len(self.sites_a)} sites of A x {len(self.sites_b)} sites of B{skipped})"

    # ---- save and load ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything :meth:`load` needs to redraw tables and heatmaps without Grams: every
        measure's value (computed now, if not yet) and every pair's thresholds."""
        pairs = []
        for row in self.to_rows():
            pair = (row["site_a"], row["site_b"])
            item: dict[str, Any] = {"site_a": pair[0], "site_b": pair[1]}
            if pair in self._reasons:
                item["reason"] = self._reasons[pair]
            else:
                item["measures"] = {m: io.json_float(row[m]) for m in MEASURES}
                item["thresholds"] = io.thresholds_to_dict(self.thresholds(*pair))
                base = self._baseline_thresholds(pair)
                item["baseline_thresholds"] = None if base is None else io.thresholds_to_dict(base)
            pairs.append(item)
        return {
            "format": "nsm-cross-comparison",
            "version": 1,
            "sites_a": list(self.sites_a),
            "sites_b": list(self.sites_b),
            "eps": list(self.eps),
            "keep": self.keep,
            "count_dead": self.count_dead,
            "centered": self.centered,
            "info": self.info,
            "pairs": pairs,
        }

    def save(self, path: Any, grams: bool = False) -> None:
        """Write :meth:`to_dict` as JSON, computing every measure first.

        A loaded comparison redraws every heatmap and table and gives ``pair()`` with
        thresholds, maximum matches and similarity at every ε; what it loses without Grams is
        what needs them: measures with another SVCCA ``keep``, the pairs' ``ratios``, simple
        and minimal matches. With ``grams=True`` the Grams (and baselines) are also written to
        ``<path>.grams.npz`` (n² floats per pair), which :meth:`load` reads back.

        Examples
        --------
        >>> import numpy as np, nsm, tempfile, os
        >>> from nsm.results import CrossComparison
        >>> X = np.random.default_rng(0).random((300, 4))
        >>> cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X ** 2)})
        >>> path = os.path.join(tempfile.mkdtemp(), "cross.json")
        >>> cc.save(path)
        >>> bool(np.array_equal(CrossComparison.load(path).matrix("cca"), cc.matrix("cca")))
        True
        """
        d = self.to_dict()
        pairs = [(item["site_a"], item["site_b"]) for item in d["pairs"]]
        io.save_result(
            path,
            d,
            (
                (f"{tag}{k}", g)
                for k, pair in enumerate(pairs)
                for tag, g in (("gram", self._gram(pair)), ("baseline", self._baseline(pair)))
            )
            if grams
            else None,
        )

    @classmethod
    def from_dict(
        cls, d: dict, grams: Mapping[Pair, Gram] | None = None, baselines: Mapping[Pair, Gram] | None = None
    ) -> CrossComparison:
        """The comparison :meth:`to_dict` describes, with the saved measures and thresholds,
        and the Grams of ``grams``/``baselines`` where given. Checked field by field as
        :meth:`nsm.Comparison.from_dict` is (a ValueError names the first malformed field)."""
        io.check_cross_dict(d)
        items = {(item["site_a"], item["site_b"]): item for item in d["pairs"]}
        reasons = {p: str(item["reason"]) for p, item in items.items() if "reason" in item}
        grams = {p: g for p, g in dict(grams or {}).items() if g is not None and p not in reasons}
        baselines = {p: b for p, b in dict(baselines or {}).items() if p in grams}
        out = cls(
            d["sites_a"],
            d["sites_b"],
            {p: grams.get(p) for p in items},
            reasons=reasons,
            baselines=baselines,
            eps=d["eps"],
            keep=d["keep"],
            count_dead=d["count_dead"],
            info=d.get("info") or {},
            centered=d.get("centered", False) is True,  # files saved before the centred match
            saved_pairs=set(grams),
        )
        for pair, item in items.items():
            if pair in reasons:
                continue
            t = io.thresholds_from_dict(item["thresholds"])
            out._thresholds[pair] = t
            base = item.get("baseline_thresholds")
            out._base_thresholds[pair] = None if base is None else io.thresholds_from_dict(base)
            for m, v in item["measures"].items():
                out._values.setdefault(m, {})[pair] = math.nan if v is None else float(v)
            g = grams.get(pair)
            if g is not None and ((g.n_x, g.n_y) != (t.n_x, t.n_y) or g.n_samples != t.n_samples):
                raise ValueError(
                    f"the Gram of {pair} ({g.n_x} + {g.n_y} neurons, {g.n_samples} samples) does not "
                    "match its saved thresholds: the Grams file belongs to another comparison"
                )
        return out

    @classmethod
    def load(cls, path: Any) -> CrossComparison:
        """Read a comparison written by :meth:`save` (and its Grams, if they were saved)."""
        d, saved = io.load_result(path)
        grams: dict[Pair, Gram] = {}
        baselines: dict[Pair, Gram] = {}
        if saved and isinstance(d, dict) and isinstance(d.get("pairs"), list):
            known = set()
            for k, item in enumerate(d["pairs"]):
                pair = (item["site_a"], item["site_b"])
                for tag, target in (("gram", grams), ("baseline", baselines)):
                    known.add(f"{tag}{k}")
                    if f"{tag}{k}" in saved:
                        target[pair] = saved[f"{tag}{k}"]
            extra = sorted(set(saved) - known)
            if extra:
                raise ValueError(
                    f"{io.grams_path(path)} holds Grams ({', '.join(extra[:3])}) that {path} has no "
                    "pair for: the Grams file belongs to another comparison; remove it"
                )
        return cls.from_dict(d, grams, baselines)


def _auc_or_nan(t: Thresholds, pair: Pair) -> float:
    out = match_auc(t, names=pair)
    return out.value if isinstance(out, Estimate) else out
