"""The result of comparing two networks layer by layer; it needs no torch to load or draw."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .gram import Gram
from .match import MatchResult
from .thresholds import Thresholds

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
    """

    name: LayerKey
    thresholds: Thresholds
    baseline_thresholds: Thresholds | None
    eps: tuple[float, ...] = DEFAULT_EPS
    gram: Gram | None = field(default=None, repr=False)
    baseline_gram: Gram | None = field(default=None, repr=False)

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

    def baseline(self, eps: Any = None) -> Any:
        """The baseline's similarity at ``eps`` (NaN when there was only one batch)."""
        e = np.asarray(self.eps if eps is None else eps, dtype=np.float64)
        if self.baseline_thresholds is None:
            out = np.full(e.shape, np.nan)
            return float(out) if out.ndim == 0 else out
        return self.baseline_thresholds.similarity(e)

    def to_dict(self) -> dict:
        return {
            "name": list(self.name) if isinstance(self.name, tuple) else self.name,
            "thresholds": _thresholds_dict(self.thresholds),
            "baseline_thresholds": (None if self.baseline_thresholds is None
                                    else _thresholds_dict(self.baseline_thresholds)),
        }


def _json_floats(a: np.ndarray) -> list:
    return [None if not math.isfinite(v) else float(v) for v in a.tolist()]


def _thresholds_dict(t: Thresholds) -> dict:
    return {"x": _json_floats(t.x), "y": _json_floats(t.y), "dead_x": t.dead_x.tolist(),
            "dead_y": t.dead_y.tolist(), "n_samples": t.n_samples, "count_dead": t.count_dead}


def _thresholds_from(d: dict) -> Thresholds:
    def arr(values: Sequence[Any], dtype: Any) -> np.ndarray:
        a = np.array([np.inf if v is None else v for v in values], dtype=dtype)
        a.setflags(write=False)
        return a

    return Thresholds(x=arr(d["x"], np.float64), y=arr(d["y"], np.float64),
                      dead_x=arr(d["dead_x"], np.int64), dead_y=arr(d["dead_y"], np.int64),
                      n_samples=int(d["n_samples"]), n_x=len(d["x"]), n_y=len(d["y"]),
                      count_dead=bool(d["count_dead"]))


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
        """A plain-text table: similarity and baseline at each ε, per layer."""
        head = ["layer", "neurons"] + [f"ε={e:g}" for e in self.eps] + [
            f"base {e:g}" for e in self.eps] + ["dead"]
        rows = []
        for key, lc in self._layers.items():
            name = key if isinstance(key, str) else f"{key[0]} / {key[1]}"
            sims = [f"{s:.3f}" for s in np.atleast_1d(lc.similarity(self.eps))]
            bases = ["-" if math.isnan(b) else f"{b:.3f}" for b in np.atleast_1d(lc.baseline(self.eps))]
            rows.append([name, f"{lc.n_x}+{lc.n_y}"] + sims + bases +
                        [f"{len(lc.dead_x)}+{len(lc.dead_y)}"])
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in
                           enumerate(zip(r, widths))) for r in [head] + rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Comparison of {len(self)} layer pairs\n{self.table()}"

    def to_dict(self) -> dict:
        """Everything needed to redraw the results (no Gram matrices)."""
        return {"format": "nsm-comparison", "version": 1, "eps": list(self.eps),
                "layers": [lc.to_dict() for lc in self._layers.values()]}

    def save(self, path: Any) -> None:
        """Write ``to_dict()`` as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> Comparison:
        if not isinstance(d, dict) or d.get("format") != "nsm-comparison":
            raise ValueError("not an nsm comparison (expected the JSON that Comparison.save writes)")
        eps = tuple(d["eps"])
        layers = {}
        for item in d["layers"]:
            key = item["name"] if isinstance(item["name"], str) else tuple(item["name"])
            base = item.get("baseline_thresholds")
            layers[key] = LayerComparison(key, _thresholds_from(item["thresholds"]),
                                          None if base is None else _thresholds_from(base), eps)
        return cls(layers, eps)

    @classmethod
    def load(cls, path: Any) -> Comparison:
        """Read a comparison written by ``save``."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
