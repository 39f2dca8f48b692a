"""The result of comparing two networks layer by layer (:class:`LayerComparison`, one pair of
layers; :class:`Comparison`, all of them): data and lazily computed measures. Their tables are
in :mod:`nsm.results.tables`, their files in :mod:`nsm.results.io`; neither needs torch."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, overload

import numpy as np

from .. import _diagnostics
from ..gram import Gram
from ..jackknife import DEFAULT_LEVEL, Estimate
from ..match import MatchResult
from ..match.simple import simple_matches
from ..match.thresholds import Thresholds, match_thresholds
from ..measures import linear_cka, match_auc
from . import io, tables

__all__ = ["DEFAULT_EPS", "Comparison", "LayerComparison"]

DEFAULT_EPS = (0.1, 0.2, 0.3, 0.4, 0.5)

LayerKey = Union[str, tuple]


@dataclass(eq=False)
class LayerComparison:
    """One layer pair: its Gram, every neuron's critical ε, and a baseline.

    The baseline pairs batch i of model A with batch i-1 of model B: the statistics of each
    layer are kept, the pairing of samples is broken. Its similarity says what "unrelated"
    looks like for these layers (post-ReLU layers of unrelated networks already match fully
    near ε ≈ 0.85).

    ``layout`` is the layout each model's site was read with (``("nchw", "nchw")``), ``tokens``
    the token mode of token sites, ``notes`` what the table flags (``"few samples"``: at most
    as many samples as neurons, where the similarity is inflated). ``gram`` is None for a
    comparison loaded from JSON saved without its Grams.

    ``few_samples`` is True for a *starved* pair, ``n_samples < FEW_SAMPLES_RATIO * (n_x +
    n_y)`` (:func:`nsm.starved.starved`): chance lowers every critical ε there, so the
    similarity is inflated (docs/method.md, "Starved layers"). It is computed from the
    thresholds' sizes (saved in JSON for other readers, recomputed on load).
    ``centered`` says whether the pair was compared with the centred match (its baseline too).
    With jackknife groups (``nsm.torch.compare(..., groups=K)``) the thresholds keep their K
    leave-one-group-out copies: :meth:`similarity_se`, :meth:`similarity_interval`,
    :meth:`match_auc_estimate` and ``linear_cka(se=True)`` give the error bars (the
    baseline keeps no groups), and they survive ``save``/``load``.
    """

    name: LayerKey
    thresholds: Thresholds
    baseline_thresholds: Thresholds | None
    eps: tuple[float, ...] = DEFAULT_EPS
    gram: Gram | None = field(default=None, repr=False)
    baseline_gram: Gram | None = field(default=None, repr=False)
    layout: tuple[str, str] | None = None
    tokens: str | None = None
    notes: tuple[str, ...] = ()
    precision: str | None = None
    # Measures computed from the Gram (or read from a file), kept: "linear_cka" and, with
    # groups, "linear_cka_estimate".
    _measures: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def few_samples(self) -> bool:
        """Whether the pair is starved: the name of :attr:`starved` in tables and saved files."""
        return self.thresholds.starved

    @property
    def starved(self) -> bool:
        """Under 4 samples per neuron (:func:`nsm.starved.starved`): the similarity is inflated."""
        return self.thresholds.starved

    @property
    def degenerate(self) -> bool:
        """At most as many samples as neurons (:func:`nsm.starved.degenerate`): any layers can
        match (the FewSamplesWarning's case)."""
        return self.thresholds.degenerate

    @property
    def centered(self) -> bool:
        """Whether this is the centred match (each neuron's mean over the samples removed)."""
        return self.thresholds.centered

    @property
    def n_x(self) -> int:
        return self.thresholds.n_x

    @property
    def n_y(self) -> int:
        return self.thresholds.n_y

    @property
    def n_samples(self) -> int:
        return self.thresholds.n_samples

    @property
    def dead_x(self) -> np.ndarray:
        return self.thresholds.dead_x

    @property
    def dead_y(self) -> np.ndarray:
        return self.thresholds.dead_y

    def max_match(self, eps: float) -> MatchResult:
        """The maximum match at ``eps``."""
        return self.thresholds.max_match(eps)

    def similarity(self, eps: Any = None) -> Any:
        """Maximum-match similarity at ``eps`` (default: the comparison's ε values)."""
        return self.thresholds.similarity(self.eps if eps is None else eps)

    @property
    def groups(self) -> int | None:
        """The number of jackknife groups kept (None without them)."""
        return self.thresholds.groups

    def similarity_se(self, eps: Any = None) -> Any:
        """Jackknife standard error of :meth:`similarity` (:meth:`nsm.Thresholds.similarity_se`;
        a ValueError saying to pass ``groups=`` when the comparison kept none)."""
        return self.thresholds.similarity_se(self.eps if eps is None else eps)

    def similarity_interval(self, eps: Any = None, level: float = DEFAULT_LEVEL) -> tuple[Any, Any]:
        """Normal interval (low, high) of :meth:`similarity` at ``eps``
        (:meth:`nsm.Thresholds.similarity_interval`)."""
        return self.thresholds.similarity_interval(self.eps if eps is None else eps, level)

    def match_auc_estimate(self, correct_bias: bool = False) -> Estimate:
        """:meth:`match_auc` with its jackknife standard error and 95% interval
        (:class:`nsm.Estimate`; ``correct_bias`` as for :func:`nsm.measures.match_auc`); a
        ValueError without groups. From the thresholds alone."""
        self.thresholds.require_leave_out("match_auc_estimate")
        out = match_auc(self.thresholds, names=self._names(), correct_bias=correct_bias)
        assert isinstance(out, Estimate)
        return out

    @overload
    def linear_cka(self, se: Literal[False] = False) -> float: ...
    @overload
    def linear_cka(self, se: Literal[True]) -> Estimate: ...

    def linear_cka(self, se: bool = False) -> float | Estimate:
        """Linear CKA of the pair (:func:`nsm.measures.linear_cka`), exact from the Gram
        (computed once, then kept; saved with the comparison). With ``se=True`` an
        :class:`nsm.Estimate`: the value with its jackknife standard error and 95% interval,
        from the Gram's groups (a ValueError without groups). A ValueError when the comparison
        was loaded without its Grams and without the value.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> g = nsm.Gram.from_arrays(X, X[:, :2], groups=5)
        >>> lc = LayerComparison("fc", nsm.match_thresholds(g), None, gram=g)
        >>> round(lc.linear_cka(), 3), round(lc.linear_cka(se=True).se, 3)
        (0.709, 0.01)
        """
        if not se:
            if "linear_cka" not in self._measures:
                self._compute_linear_cka()
            return self._measures["linear_cka"]
        self.thresholds.require_leave_out("linear_cka(se=True)")
        if "linear_cka_estimate" not in self._measures:
            self._compute_linear_cka()
            if "linear_cka_estimate" not in self._measures:
                raise ValueError(f"layer {self.name!r}: its Gram keeps no jackknife groups")
        return self._measures["linear_cka_estimate"]

    def _compute_linear_cka(self) -> None:
        out = linear_cka(self.require_gram(), names=self._names())
        if isinstance(out, Estimate):  # a Gram with groups: keep the estimate too
            self._measures["linear_cka_estimate"] = out
            out = out.value
        self._measures["linear_cka"] = out

    @overload
    def _known_linear_cka(self, se: Literal[False] = False) -> float: ...
    @overload
    def _known_linear_cka(self, se: Literal[True]) -> Estimate | None: ...

    def _known_linear_cka(self, se: bool = False) -> float | Estimate | None:
        """:meth:`linear_cka` where it can be had without news (for tables and files): NaN (or
        None for ``se=True``) when there is no Gram and it was not saved, or without groups;
        warnings about undefined values are not repeated."""
        if se:
            if self.groups is None:
                return None
            if "linear_cka_estimate" not in self._measures and (
                self.gram is None or self.gram.groups is None
            ):
                return None  # no Gram, or one without groups (made elsewhere): not known
        elif self.gram is None and "linear_cka" not in self._measures:
            return math.nan
        with _diagnostics.collect():
            return self.linear_cka(se=True) if se else self.linear_cka()

    def baseline(self, eps: Any = None) -> Any:
        """The baseline's similarity at ``eps`` (NaN when there was only one batch)."""
        e = np.asarray(self.eps if eps is None else eps, dtype=np.float64)
        if self.baseline_thresholds is None:
            out = np.full(e.shape, np.nan)
            return float(out) if out.ndim == 0 else out
        return self.baseline_thresholds.similarity(e)

    def require_gram(self) -> Gram:
        """The Gram, or a ValueError saying how to keep it."""
        if self.gram is None:
            raise ValueError(
                f"layer {self.name!r} has no Gram: it was loaded from a comparison saved "
                "without Grams; save it with save(path, grams=True) to keep them"
            )
        return self.gram

    def simple_matches(self, eps: float) -> Any:
        """The simple matches at ``eps`` (:func:`nsm.simple_matches` on this pair's Gram)."""
        return simple_matches(self.require_gram(), eps, centered=self.centered)

    def match_auc(self) -> float:
        """Area under the similarity curve, ∫₀¹ similarity(ε) dε (:func:`nsm.measures.match_auc`);
        from the thresholds alone, so it works on a loaded comparison. A float, with groups
        too (see :meth:`match_auc_estimate`)."""
        out = match_auc(self.thresholds, names=self._names())
        return out.value if isinstance(out, Estimate) else out

    def baseline_match_auc(self) -> float:
        """The baseline's :meth:`match_auc` (NaN when there is no baseline)."""
        if self.baseline_thresholds is None:
            return math.nan
        out = match_auc(self.baseline_thresholds, names=self._names())
        return out.value if isinstance(out, Estimate) else out

    def _names(self) -> tuple[str, str]:
        """The two sites' names, for warnings."""
        if isinstance(self.name, tuple) and len(self.name) == 2:
            return str(self.name[0]), str(self.name[1])
        return str(self.name), str(self.name)

    def to_dict(self) -> dict:
        """This pair as its ``report.json`` entry (:mod:`nsm.results.io`; no Gram matrices)."""
        return io.layer_to_dict(self)


class Comparison(Mapping):
    """Layer comparisons by layer name (or ``(name_a, name_b)`` when the models name a layer
    differently). Its repr is a table; ``save``/``load`` keep everything needed to redraw."""

    def __init__(self, layers: dict[LayerKey, LayerComparison], eps: Sequence[float]) -> None:
        self._layers = dict(layers)
        self.eps = tuple(float(e) for e in eps)

    def __getitem__(self, key: LayerKey) -> LayerComparison:
        try:
            return self._layers[key]
        except KeyError:
            names = ", ".join(repr(k) for k in self._layers)
            raise KeyError(f"no layer pair {key!r} in this comparison; it holds {names}") from None

    def __iter__(self) -> Iterator[LayerKey]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def table(self) -> str:
        """A plain-text table: similarity and baseline at each ε, per layer; ``value ± se``
        (the jackknife standard error) where the layer kept groups."""
        return tables.comparison_table(self)

    def __repr__(self) -> str:
        return f"Comparison of {len(self)} layer pairs\n{self.table()}"

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per layer pair (long format): the layer names, sizes, similarity and
        baseline at each ε, ``match_auc``, ``baseline_match_auc`` and ``linear_cka`` (NaN when
        loaded without Grams or undefined), ``few_samples`` (starved), ``centered`` and
        ``precision`` (the Gram's pass; None when unknown, as in files saved before it). When
        some layer kept jackknife groups, every row ends with ``groups``,
        ``similarity_se_<ε>`` at each ε, ``match_auc_se`` and ``linear_cka_se`` (NaN for
        layers without groups).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import Comparison, LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> g = nsm.Gram.from_arrays(X, X[:, :2])
        >>> c = Comparison({"fc": LayerComparison("fc", nsm.match_thresholds(g), None, gram=g)},
        ...                eps=[0.1])
        >>> row = c.to_rows()[0]
        >>> row["layer"], round(row["similarity_0.1"], 3), round(row["linear_cka"], 3)
        ('fc', 0.667, 0.709)
        """
        return tables.comparison_rows(self)

    def to_csv(self, path: Any) -> None:
        """Write :meth:`to_rows` as CSV (one row per layer pair; NaN written as ``nan``).

        Examples
        --------
        >>> import numpy as np, nsm, tempfile, os
        >>> from nsm.results import Comparison, LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> t = nsm.match_thresholds(X, X[:, :2])
        >>> path = os.path.join(tempfile.mkdtemp(), "layers.csv")
        >>> Comparison({"fc": LayerComparison("fc", t, None)}, eps=[0.1]).to_csv(path)
        >>> with open(path) as f:
        ...     f.readline().split(",")[:4]
        ['layer', 'layer_a', 'layer_b', 'n_x']
        """
        tables.write_csv(self.to_rows(), path)

    def to_pandas(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
        return tables.to_dataframe(self.to_rows())

    def recentered(self) -> Comparison:
        """The same layer pairs under the centred match, from the comparison's Grams (no second
        pass over the data); the baselines are centred too. A ValueError for a comparison
        loaded without its Grams.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.results import Comparison, LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> g = nsm.Gram.from_arrays(X, X[:, :2] + 1)
        >>> c = Comparison({"fc": LayerComparison("fc", nsm.match_thresholds(g), None, gram=g)}, eps=[0.1])
        >>> c.recentered()["fc"].centered
        True
        """
        layers = {}
        for key, lc in self._layers.items():
            count_dead = lc.thresholds.count_dead
            base = lc.baseline_gram
            layers[key] = LayerComparison(
                key,
                match_thresholds(lc.require_gram(), count_dead=count_dead, centered=True),
                None if base is None else match_thresholds(base, count_dead=count_dead, centered=True),
                lc.eps,
                gram=lc.gram,
                baseline_gram=base,
                layout=lc.layout,
                tokens=lc.tokens,
                notes=lc.notes,
                precision=lc.precision,
            )
        return Comparison(layers, self.eps)

    def to_dict(self) -> dict:
        """Everything needed to redraw the results (no Gram matrices): the ``nsm-comparison``
        format of :mod:`nsm.results.io`."""
        return {
            "format": "nsm-comparison",
            "version": 1,
            "eps": list(self.eps),
            "layers": [lc.to_dict() for lc in self._layers.values()],
        }

    def save(self, path: Any, grams: bool = False) -> None:
        """Write ``to_dict()`` as JSON; with ``grams``, also every Gram (``<path>.grams.npz``),
        which :meth:`load` reads back so that ``simple_matches`` works after loading. Without
        them a loaded comparison redraws every figure and table but has no Gram. Each file is
        written whole to a temporary file and then moved over the old one: a failed save
        leaves the previous file as it was."""
        io.save_result(
            path,
            self.to_dict(),
            (
                (f"{tag}{i}", g)
                for i, lc in enumerate(self._layers.values())
                for tag, g in (("gram", lc.gram), ("baseline", lc.baseline_gram))
            )
            if grams
            else None,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        """The comparison :meth:`to_dict` describes (checked field by field: a ValueError names
        the first malformed one)."""
        io.check_comparison_dict(d)
        eps = tuple(d["eps"])
        layers = {}
        for item in d["layers"]:
            fields, measures = io.layer_from_dict(item, eps)
            lc = LayerComparison(**fields)
            lc._measures.update(measures)
            layers[lc.name] = lc
        return cls(layers, eps)

    @classmethod
    def load(cls, path: Any) -> Comparison:
        """Read a comparison written by ``save`` (and its Grams, if they were saved)."""
        d, saved = io.load_result(path)
        out = cls.from_dict(d)
        names = {
            f"{tag}{i}": (lc, tag)
            for i, lc in enumerate(out._layers.values())
            for tag in ("gram", "baseline")
        }
        for name, g in saved.items():
            if name not in names:
                raise ValueError(f"{io.grams_path(path)} holds a Gram ({name}) that {path} has no layer for")
            lc, tag = names[name]
            t = lc.thresholds if tag == "gram" else lc.baseline_thresholds
            if (
                t is None
                or (g.n_x, g.n_y) != (t.n_x, t.n_y)
                or (tag == "gram" and g.n_samples != t.n_samples)
            ):
                raise ValueError(
                    f"{io.grams_path(path)}: its {name} ({g.n_x} + {g.n_y} neurons, {g.n_samples} samples) "
                    f"is not layer {lc.name!r}'s: the Grams file belongs to another comparison; remove it"
                )
            setattr(lc, "gram" if tag == "gram" else "baseline_gram", g)
        return out
