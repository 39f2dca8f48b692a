"""The results as tables: the text table of a comparison, its rows (long format, one dict per
layer pair), CSV and pandas. Rendering lives here, apart from the result classes' data
(:mod:`nsm.results.comparison`, :mod:`nsm.results.cross`)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._files import atomic_write
from ..jackknife import Estimate
from ..starved import FEW_SAMPLES_RATIO

if TYPE_CHECKING:
    from .comparison import Comparison, LayerComparison, LayerKey

__all__ = ["comparison_rows", "comparison_table", "to_dataframe", "write_csv"]


def comparison_table(c: Comparison) -> str:
    """The plain-text table of :meth:`nsm.Comparison.table`."""
    eps = c.eps
    layers = {key: c[key] for key in c}
    head = (
        ["layer", "layout", "neurons"]
        + [f"ε={e:g}" for e in eps]
        + [f"base {e:g}" for e in eps]
        + ["auc", "base auc", "cka", "dead", "note"]
    )
    rows = []
    mixed = len({lc.centered for lc in layers.values()}) > 1
    both_passes = len({lc.precision for lc in layers.values()} - {None}) > 1
    for key, lc in layers.items():
        name = key if isinstance(key, str) else f"{key[0]} / {key[1]}"
        sims = _similarity_texts(lc, eps)
        bases = ["-" if math.isnan(b) else f"{b:.3f}" for b in np.atleast_1d(lc.baseline(eps))]
        cka = lc._known_linear_cka()
        measures = [
            _number_text(lc.match_auc(), None if lc.groups is None else lc.match_auc_estimate().se),
            _number_text(lc.baseline_match_auc()),
            _number_text(cka, _se_or_none(lc._known_linear_cka(se=True))),
        ]
        rows.append(
            [name, _layout_text(lc), f"{lc.n_x}+{lc.n_y}"]
            + sims
            + bases
            + measures
            + [f"{len(lc.dead_x)}+{len(lc.dead_y)}", "; ".join(_notes(lc, mixed, both_passes)) or "-"]
        )
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = [
        "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [head] + rows
    ]
    return "\n".join(lines + _legend(layers))


def _legend(layers: dict[LayerKey, LayerComparison]) -> list[str]:
    """Lines under the table: which Gram pass and which match it is, and what "starved" means."""
    out = []
    passes = {lc.precision for lc in layers.values() if lc.precision is not None}
    if len(passes) == 1:
        (which_pass,) = passes
        out.append(f"Grams: the {which_pass} pass" + _PASSES.get(which_pass, ""))
    elif passes:
        out.append("Grams: the float64 pass, or the mixed pass where a layer's note says 'mixed'")
    if any(lc.centered for lc in layers.values()):
        which = "every layer" if all(lc.centered for lc in layers.values()) else "layers marked centred"
        out.append(f"centred match ({which}): each neuron's mean over the samples removed")
    if any(lc.few_samples for lc in layers.values()):
        out.append(
            f"starved: n_samples < {FEW_SAMPLES_RATIO:g} (n_x + n_y), where chance lowers every "
            "critical eps: the similarity is inflated (docs/method.md, 'Starved layers')"
        )
    return out


def comparison_rows(c: Comparison) -> list[dict[str, Any]]:
    """The rows of :meth:`nsm.Comparison.to_rows`."""
    eps = c.eps
    layers = {key: c[key] for key in c}
    rows = []
    grouped = any(lc.groups is not None for lc in layers.values())
    for key, lc in layers.items():
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
        sims = np.atleast_1d(lc.similarity(eps))
        bases = np.atleast_1d(lc.baseline(eps))
        for e, sim, base in zip(eps, sims, bases):
            row[f"similarity_{e:g}"] = float(sim)
            row[f"baseline_{e:g}"] = float(base)
        row["match_auc"] = lc.match_auc()
        row["baseline_match_auc"] = lc.baseline_match_auc()
        row["linear_cka"] = lc._known_linear_cka()
        row["few_samples"] = bool(lc.few_samples)
        row["centered"] = lc.centered
        row["precision"] = lc.precision
        if grouped:
            row.update(_se_columns(lc, eps))
        rows.append(row)
    return rows


_PASSES = {
    "float64": " (float64 products)",
    "mixed": " (float32 products over blocks of 2,048 rows, added in float64)",
}


def _notes(lc: LayerComparison, mark_centered: bool, mark_mixed: bool = False) -> list[str]:
    """The note column: the stored notes, then the starved marker, and "centred" ("mixed") when
    the table mixes both matches (both passes); otherwise the legend says it once."""
    out = list(lc.notes)
    if mark_mixed and lc.precision == "mixed":
        out.append("mixed")
    if lc.few_samples:
        out.append(f"starved ({lc.n_samples / (lc.n_x + lc.n_y):.2g} samples/neuron)")
    if lc.centered and mark_centered:
        out.append("centred")
    return out


def _se_columns(lc: LayerComparison, eps: Sequence[float]) -> dict[str, Any]:
    """The jackknife columns of a row (NaN without groups)."""
    out: dict[str, Any] = {"groups": lc.groups}
    se = np.atleast_1d(lc.similarity_se(eps)) if lc.groups is not None else np.full(len(eps), np.nan)
    for e, v in zip(eps, se):
        out[f"similarity_se_{e:g}"] = float(v)
    out["match_auc_se"] = math.nan if lc.groups is None else lc.match_auc_estimate().se
    cka = lc._known_linear_cka(se=True)
    out["linear_cka_se"] = math.nan if cka is None else cka.se
    return out


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


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if value is None:
        return ""
    return value


def write_csv(rows: Sequence[dict[str, Any]], path: Any) -> None:
    """Write ``rows`` (dicts with the same keys, in order) as CSV with a header line.

    Examples
    --------
    >>> import tempfile, os
    >>> from nsm.results.tables import write_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> write_csv([{"a": 1, "b": float("nan")}], path)
    >>> with open(path) as f:
    ...     f.read().splitlines()
    ['a,b', '1,nan']
    """
    if not rows:
        raise ValueError("nothing to write: the result has no rows")
    with atomic_write(path) as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def to_dataframe(rows: Sequence[dict[str, Any]]) -> Any:
    """``rows`` as a pandas DataFrame; an ImportError that says how to install pandas if missing."""
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("to_pandas() needs pandas: pip install pandas (or use to_csv)") from exc
    return pandas.DataFrame(list(rows))
