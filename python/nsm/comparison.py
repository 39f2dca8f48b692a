"""The result of comparing two networks layer by layer; it needs no torch to load or draw."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .gram import Gram
from .jackknife import DEFAULT_LEVEL, Estimate
from .match import MatchResult
from .saved_grams import load_grams, save_grams
from .starved import FEW_SAMPLES_RATIO, few_samples
from .thresholds import Thresholds
from .validation import check_comparison_dict

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
    n_y)`` (:func:`nsm.starved.few_samples`): chance lowers every critical ε there, so the
    similarity is inflated (docs/method.md, "Starved layers"). It is computed from the
    thresholds' sizes (saved in JSON for other readers, recomputed on load).
    ``centered`` says whether the pair was compared with the centred match (its baseline too).
    With jackknife groups (``nsm.torch.compare(..., groups=K)``) the thresholds keep their K
    leave-one-group-out copies: :meth:`similarity_se`, :meth:`similarity_interval`,
    :meth:`match_auc_estimate` and :meth:`linear_cka_estimate` give the error bars (the
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

    @property
    def few_samples(self) -> bool:
        """Whether the pair is starved (:func:`nsm.starved.few_samples` of its sizes)."""
        t = self.thresholds
        return few_samples(t.n_samples, t.n_x, t.n_y)

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
        from .measures import match_auc

        self.thresholds._require_leave_out("match_auc_estimate")
        out = match_auc(self.thresholds, names=self._names(), correct_bias=correct_bias)
        assert isinstance(out, Estimate)
        return out

    def linear_cka_estimate(self) -> Estimate:
        """:meth:`linear_cka` with its jackknife standard error and 95% interval, from the
        Gram's groups (computed once, then kept; saved with the comparison). A ValueError
        without groups, or when loaded without Grams and without it."""
        from .measures import linear_cka

        self.thresholds._require_leave_out("linear_cka_estimate")
        cache = self.__dict__.setdefault("_measure_cache", {})
        if "linear_cka_estimate" not in cache:
            out = linear_cka(self.require_gram(), names=self._names())
            if not isinstance(out, Estimate):
                raise ValueError(f"layer {self.name!r}: its Gram keeps no jackknife groups")
            cache["linear_cka_estimate"] = out
            cache["linear_cka"] = out.value
        return cache["linear_cka_estimate"]

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
        from .simple import simple_matches

        return simple_matches(self.require_gram(), eps, centered=self.centered)

    def match_auc(self) -> float:
        """Area under the similarity curve, ∫₀¹ similarity(ε) dε (:func:`nsm.measures.match_auc`);
        from the thresholds alone, so it works on a loaded comparison. A float, with groups
        too (see :meth:`match_auc_estimate`)."""
        from .measures import match_auc

        out = match_auc(self.thresholds, names=self._names())
        return out.value if isinstance(out, Estimate) else out

    def baseline_match_auc(self) -> float:
        """The baseline's :meth:`match_auc` (NaN when there is no baseline)."""
        from .measures import match_auc

        if self.baseline_thresholds is None:
            return math.nan
        out = match_auc(self.baseline_thresholds, names=self._names())
        return out.value if isinstance(out, Estimate) else out

    def linear_cka(self) -> float:
        """Linear CKA of the pair (:func:`nsm.measures.linear_cka`), exact from the Gram (computed
        once, then kept); a ValueError when the comparison was loaded without its Grams."""
        from .measures import linear_cka

        cache = self.__dict__.setdefault("_measure_cache", {})
        if "linear_cka" not in cache:
            out = linear_cka(self.require_gram(), names=self._names())
            if isinstance(out, Estimate):  # a Gram with groups: keep the estimate too
                cache["linear_cka_estimate"] = out
                out = out.value
            cache["linear_cka"] = out
        return cache["linear_cka"]

    def _names(self) -> tuple[str, str]:
        """The two sites' names, for warnings."""
        if isinstance(self.name, tuple) and len(self.name) == 2:
            return str(self.name[0]), str(self.name[1])
        return str(self.name), str(self.name)

    def to_dict(self) -> dict:
        return {
            "name": list(self.name) if isinstance(self.name, tuple) else self.name,
            "thresholds": _thresholds_dict(self.thresholds),
            "baseline_thresholds": (
                None if self.baseline_thresholds is None else _thresholds_dict(self.baseline_thresholds)
            ),
            "layout": None if self.layout is None else list(self.layout),
            "tokens": self.tokens,
            "notes": list(self.notes),
            "linear_cka": _json_float(self._quiet_linear_cka()),
            "few_samples": bool(self.few_samples),
            **self._estimates_dict(),
        }

    def _estimates_dict(self) -> dict:
        """With groups, linear CKA's se (when known); the rest comes from the thresholds."""
        if self.groups is None:
            return {}
        e = self.known_linear_cka_estimate()
        return {"linear_cka_se": None if e is None else _json_float(e.se)}

    def known_linear_cka_estimate(self) -> Estimate | None:
        """:meth:`linear_cka_estimate`, or None without groups or when it cannot be had (no
        Gram and not saved); warnings about undefined values are not repeated."""
        from .exceptions import NsmWarning

        if self.groups is None:
            return None
        cache = self.__dict__.get("_measure_cache", {})
        if "linear_cka_estimate" not in cache and (self.gram is None or self.gram.groups is None):
            return None  # no Gram, or one without groups (made elsewhere): not known
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NsmWarning)
            return self.linear_cka_estimate()

    def _quiet_linear_cka(self) -> float:
        """known_linear_cka without the NaN warning (saving an undefined value is no news)."""
        from .exceptions import NsmWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NsmWarning)
            return self.known_linear_cka()

    def known_linear_cka(self) -> float:
        """:meth:`linear_cka`, or NaN when there is no Gram and it was not saved."""
        if self.gram is None and "linear_cka" not in self.__dict__.get("_measure_cache", {}):
            return math.nan
        return self.linear_cka()


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _json_floats(a: np.ndarray) -> list:
    return [None if not math.isfinite(v) else float(v) for v in a.tolist()]


def _thresholds_dict(t: Thresholds) -> dict:
    out = {
        "x": _json_floats(t.x),
        "y": _json_floats(t.y),
        "dead_x": t.dead_x.tolist(),
        "dead_y": t.dead_y.tolist(),
        "n_samples": t.n_samples,
        "count_dead": t.count_dead,
        "centered": t.centered,
    }
    if t.leave_out is not None:
        out["leave_out"] = [_thresholds_dict(lo) for lo in t.leave_out]
    return out


def _thresholds_from(d: dict) -> Thresholds:
    def arr(values: Sequence[Any], dtype: Any) -> np.ndarray:
        a = np.array([np.inf if v is None else v for v in values], dtype=dtype)
        a.setflags(write=False)
        return a

    return Thresholds(
        x=arr(d["x"], np.float64),
        y=arr(d["y"], np.float64),
        dead_x=arr(d["dead_x"], np.int64),
        dead_y=arr(d["dead_y"], np.int64),
        n_samples=int(d["n_samples"]),
        n_x=len(d["x"]),
        n_y=len(d["y"]),
        count_dead=bool(d["count_dead"]),
        centered=bool(d.get("centered", False)),  # files saved before the centred match
        leave_out=None
        if d.get("leave_out") is None
        else tuple(_thresholds_from(lo) for lo in d["leave_out"]),
    )


class Comparison(Mapping):
    """Layer comparisons by layer name (or ``(name_a, name_b)`` when the models name a layer
    differently). Its repr is a table; ``save``/``load`` keep everything needed to redraw."""

    def __init__(self, layers: dict[LayerKey, LayerComparison], eps: Sequence[float]) -> None:
        self._layers = dict(layers)
        self.eps = tuple(float(e) for e in eps)

    def __getitem__(self, key: LayerKey) -> LayerComparison:
        return self._layers[key]

    def __iter__(self) -> Iterator[LayerKey]:
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def table(self) -> str:
        """A plain-text table: similarity and baseline at each ε, per layer; ``value ± se``
        (the jackknife standard error) where the layer kept groups."""
        head = (
            ["layer", "layout", "neurons"]
            + [f"ε={e:g}" for e in self.eps]
            + [f"base {e:g}" for e in self.eps]
            + ["auc", "base auc", "cka", "dead", "note"]
        )
        rows = []
        mixed = len({lc.centered for lc in self._layers.values()}) > 1
        for key, lc in self._layers.items():
            name = key if isinstance(key, str) else f"{key[0]} / {key[1]}"
            sims = _similarity_texts(lc, self.eps)
            bases = ["-" if math.isnan(b) else f"{b:.3f}" for b in np.atleast_1d(lc.baseline(self.eps))]
            cka = lc.known_linear_cka()
            measures = [
                _number_text(lc.match_auc(), None if lc.groups is None else lc.match_auc_estimate().se),
                _number_text(lc.baseline_match_auc()),
                _number_text(cka, _se_or_none(lc.known_linear_cka_estimate())),
            ]
            rows.append(
                [name, _layout_text(lc), f"{lc.n_x}+{lc.n_y}"]
                + sims
                + bases
                + measures
                + [f"{len(lc.dead_x)}+{len(lc.dead_y)}", "; ".join(_notes(lc, mixed)) or "-"]
            )
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        lines = [
            "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in [head] + rows
        ]
        return "\n".join(lines + self._legend())

    def _legend(self) -> list[str]:
        """Lines under the table: which match it is, and what "starved" means."""
        out = []
        if any(lc.centered for lc in self._layers.values()):
            which = (
                "every layer" if all(lc.centered for lc in self._layers.values()) else "layers marked centred"
            )
            out.append(f"centred match ({which}): each neuron's mean over the samples removed")
        if any(lc.few_samples for lc in self._layers.values()):
            out.append(
                f"starved: n_samples < {FEW_SAMPLES_RATIO:g} (n_x + n_y), where chance lowers every "
                "critical eps: the similarity is inflated (docs/method.md, 'Starved layers')"
            )
        return out

    def __repr__(self) -> str:
        return f"Comparison of {len(self)} layer pairs\n{self.table()}"

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per layer pair (long format): the layer names, sizes, similarity and
        baseline at each ε, ``match_auc``, ``baseline_match_auc`` and ``linear_cka`` (NaN when
        loaded without Grams or undefined), ``few_samples`` (starved) and ``centered``. When
        some layer kept jackknife groups, every row ends with ``groups``,
        ``similarity_se_<ε>`` at each ε, ``match_auc_se`` and ``linear_cka_se`` (NaN for
        layers without groups).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> from nsm.comparison import Comparison, LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> g = nsm.Gram.from_arrays(X, X[:, :2])
        >>> c = Comparison({"fc": LayerComparison("fc", nsm.match_thresholds(g), None, gram=g)},
        ...                eps=[0.1])
        >>> row = c.to_rows()[0]
        >>> row["layer"], round(row["similarity_0.1"], 3), round(row["linear_cka"], 3)
        ('fc', 0.667, 0.709)
        """
        rows = []
        grouped = any(lc.groups is not None for lc in self._layers.values())
        for key, lc in self._layers.items():
            name_a, name_b = (key, key) if isinstance(key, str) else (str(key[0]), str(key[1]))
            row: dict[str, Any] = {
                "layer": _key_text(key),
                "layer_a": name_a,
                "layer_b": name_b,
                "n_x": lc.n_x,
                "n_y": lc.n_y,
                "n_samples": lc.n_samples,
                "dead_x": len(lc.dead_x),
                "dead_y": len(lc.dead_y),
            }
            sims = np.atleast_1d(lc.similarity(self.eps))
            bases = np.atleast_1d(lc.baseline(self.eps))
            for e, sim, base in zip(self.eps, sims, bases):
                row[f"similarity_{e:g}"] = float(sim)
                row[f"baseline_{e:g}"] = float(base)
            row["match_auc"] = lc.match_auc()
            row["baseline_match_auc"] = lc.baseline_match_auc()
            row["linear_cka"] = lc.known_linear_cka()
            row["few_samples"] = bool(lc.few_samples)
            row["centered"] = lc.centered
            if grouped:
                row.update(_se_columns(lc, self.eps))
            rows.append(row)
        return rows

    def to_csv(self, path: Any) -> None:
        """Write :meth:`to_rows` as CSV (one row per layer pair; NaN written as ``nan``).

        Examples
        --------
        >>> import numpy as np, nsm, tempfile, os
        >>> from nsm.comparison import Comparison, LayerComparison
        >>> X = np.random.default_rng(0).random((500, 4))
        >>> t = nsm.match_thresholds(X, X[:, :2])
        >>> path = os.path.join(tempfile.mkdtemp(), "layers.csv")
        >>> Comparison({"fc": LayerComparison("fc", t, None)}, eps=[0.1]).to_csv(path)
        >>> with open(path) as f:
        ...     f.readline().split(",")[:4]
        ['layer', 'layer_a', 'layer_b', 'n_x']
        """
        from .export import write_csv

        write_csv(self.to_rows(), path)

    def to_pandas(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
        from .export import to_dataframe

        return to_dataframe(self.to_rows())

    def to_dict(self) -> dict:
        """Everything needed to redraw the results (no Gram matrices)."""
        return {
            "format": "nsm-comparison",
            "version": 1,
            "eps": list(self.eps),
            "layers": [lc.to_dict() for lc in self._layers.values()],
        }

    def save(self, path: Any, grams: bool = False) -> None:
        """Write ``to_dict()`` as JSON; with ``grams``, also every Gram (``<path>.grams.npz``),
        which :meth:`load` reads back so that ``simple_matches`` works after loading. Without
        them a loaded comparison redraws every figure and table but has no Gram."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        if grams:
            save_grams(
                path,
                (
                    (f"{tag}{i}", g)
                    for i, lc in enumerate(self._layers.values())
                    for tag, g in (("gram", lc.gram), ("baseline", lc.baseline_gram))
                ),
            )

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        check_comparison_dict(d)
        eps = tuple(d["eps"])
        layers = {}
        for item in d["layers"]:
            key = item["name"] if isinstance(item["name"], str) else tuple(item["name"])
            base = item.get("baseline_thresholds")
            layout = item.get("layout")
            layers[key] = LayerComparison(
                key,
                _thresholds_from(item["thresholds"]),
                None if base is None else _thresholds_from(base),
                eps,
                layout=None if layout is None else tuple(layout),
                tokens=item.get("tokens"),
                notes=tuple(item.get("notes", ())),
            )
            if item.get("linear_cka") is not None:
                cache: dict[str, Any] = {"linear_cka": float(item["linear_cka"])}
                se = item.get("linear_cka_se")
                if se is not None and layers[key].groups is not None:
                    cache["linear_cka_estimate"] = _estimate_of(cache["linear_cka"], float(se))
                layers[key].__dict__["_measure_cache"] = cache
        return cls(layers, eps)

    @classmethod
    def load(cls, path: Any) -> Comparison:
        """Read a comparison written by ``save`` (and its Grams, if they were saved)."""
        with open(path, encoding="utf-8") as f:
            out = cls.from_dict(json.load(f))
        saved = load_grams(path)
        for i, lc in enumerate(out._layers.values()):
            lc.gram = saved.get(f"gram{i}", lc.gram)
            lc.baseline_gram = saved.get(f"baseline{i}", lc.baseline_gram)
        return out


def _notes(lc: LayerComparison, mark_centred: bool) -> list[str]:
    """The note column: the stored notes, then the starved marker, and "centred" when the
    table mixes both matches (otherwise the legend says it once)."""
    out = list(lc.notes)
    if lc.few_samples:
        out.append(f"starved ({lc.n_samples / (lc.n_x + lc.n_y):.2g} samples/neuron)")
    if lc.centered and mark_centred:
        out.append("centred")
    return out


def _se_columns(lc: LayerComparison, eps: Sequence[float]) -> dict[str, Any]:
    """The jackknife columns of a row (NaN without groups)."""
    out: dict[str, Any] = {"groups": lc.groups}
    se = np.atleast_1d(lc.similarity_se(eps)) if lc.groups is not None else np.full(len(eps), np.nan)
    for e, v in zip(eps, se):
        out[f"similarity_se_{e:g}"] = float(v)
    out["match_auc_se"] = math.nan if lc.groups is None else lc.match_auc_estimate().se
    cka = lc.known_linear_cka_estimate()
    out["linear_cka_se"] = math.nan if cka is None else cka.se
    return out


def _estimate_of(value: float, se: float) -> Estimate:
    from .jackknife import normal_interval

    low, high = normal_interval(value, se)
    return Estimate(value, se, low, high)


def _key_text(key: LayerKey) -> str:
    return key if isinstance(key, str) else f"{key[0]} / {key[1]}"


def _number_text(value: float, se: float | None = None) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.3f}" if se is None else f"{value:.3f} ± {se:.3f}"


def _se_or_none(e: Estimate | None) -> float | None:
    return None if e is None else e.se


def _similarity_texts(lc: LayerComparison, eps: Sequence[float]) -> list[str]:
    sims = np.atleast_1d(lc.similarity(eps))
    if lc.groups is None:
        return [f"{s:.3f}" for s in sims]
    return [_number_text(float(s), float(e)) for s, e in zip(sims, np.atleast_1d(lc.similarity_se(eps)))]


def _layout_text(lc: LayerComparison) -> str:
    if lc.layout is None:
        return "-"
    text = lc.layout[0] if lc.layout[0] == lc.layout[1] else f"{lc.layout[0]}/{lc.layout[1]}"
    return f"{text} {lc.tokens}" if lc.tokens else text
