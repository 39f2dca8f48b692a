"""The results' files: both JSON formats (a comparison's ``report.json``, a grid's
``cross.json``), their schema checks, and the Grams saved beside them (``<path>.grams.npz``,
each Gram in the Gram's own codec, :mod:`nsm.gram.npz`).

Formats (version 1):

- ``nsm-comparison``: ``eps`` and ``layers``, each with its ``name``, ``thresholds``,
  ``baseline_thresholds``, ``layout``, ``tokens``, ``notes``, ``linear_cka`` (and with
  jackknife groups ``linear_cka_se``) and ``few_samples`` (written for other readers; derived
  from the thresholds on load).
- ``nsm-cross-comparison``: ``sites_a``, ``sites_b``, ``eps``, ``keep``, ``count_dead``,
  ``centered``, ``info`` and ``pairs``, each with its sites and either a ``reason`` or its
  ``measures``, ``thresholds`` and ``baseline_thresholds``.

A thresholds object holds ``x``, ``y`` (critical ε, null for infinity), ``dead_x``,
``dead_y``, ``n_samples``, ``count_dead``, ``centered`` and, with groups, ``leave_out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._files import atomic_write
from .._validation import MAX_EPS, PRECISIONS
from ..gram import Gram, npz
from ..jackknife import Estimate, normal_interval
from ..match.thresholds import Thresholds

if TYPE_CHECKING:
    from .comparison import LayerComparison

__all__ = [
    "check_comparison_dict",
    "check_cross_dict",
    "check_thresholds_dict",
    "grams_path",
    "json_float",
    "layer_from_dict",
    "layer_to_dict",
    "load_grams",
    "load_result",
    "save_grams",
    "save_result",
    "thresholds_from_dict",
    "thresholds_to_dict",
]


# ---- values -----------------------------------------------------------------------------------


def json_float(v: float) -> float | None:
    """A float for JSON: NaN and infinities as null."""
    return float(v) if math.isfinite(v) else None


def _json_floats(a: np.ndarray) -> list:
    return [None if not math.isfinite(v) else float(v) for v in a.tolist()]


def thresholds_to_dict(t: Thresholds) -> dict:
    """A :class:`nsm.Thresholds` as the JSON object both formats store."""
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
        out["leave_out"] = [thresholds_to_dict(lo) for lo in t.leave_out]
    return out


def thresholds_from_dict(d: dict) -> Thresholds:
    """The :class:`nsm.Thresholds` of a checked thresholds object (:func:`check_thresholds_dict`)."""

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
        else tuple(thresholds_from_dict(lo) for lo in d["leave_out"]),
    )


# ---- a comparison's layers -------------------------------------------------------------------


def layer_to_dict(lc: LayerComparison) -> dict:
    """A layer pair's entry of ``report.json``."""
    out = {
        "name": list(lc.name) if isinstance(lc.name, tuple) else lc.name,
        "thresholds": thresholds_to_dict(lc.thresholds),
        "baseline_thresholds": (
            None if lc.baseline_thresholds is None else thresholds_to_dict(lc.baseline_thresholds)
        ),
        "layout": None if lc.layout is None else list(lc.layout),
        "tokens": lc.tokens,
        "notes": list(lc.notes),
        "linear_cka": json_float(lc._known_linear_cka()),
        "few_samples": bool(lc.few_samples),
    }
    if lc.precision is not None:  # the pass that made the Gram (files before it was saved: unknown)
        out["precision"] = lc.precision
    if lc.groups is not None:  # linear CKA's se (when known); the rest comes from the thresholds
        e = lc._known_linear_cka(se=True)
        out["linear_cka_se"] = None if e is None else json_float(e.se)
    return out


def layer_from_dict(item: dict, eps: tuple[float, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields of the :class:`nsm.results.LayerComparison` of a checked ``report.json``
    entry, and the measures it saved (``linear_cka``, ``linear_cka_estimate``)."""
    base = item.get("baseline_thresholds")
    layout = item.get("layout")
    thresholds = thresholds_from_dict(item["thresholds"])
    fields = dict(
        name=item["name"] if isinstance(item["name"], str) else tuple(item["name"]),
        thresholds=thresholds,
        baseline_thresholds=None if base is None else thresholds_from_dict(base),
        eps=eps,
        layout=None if layout is None else tuple(layout),
        tokens=item.get("tokens"),
        notes=tuple(item.get("notes", ())),
        precision=item.get("precision"),
    )
    measures: dict[str, Any] = {}
    if item.get("linear_cka") is not None:
        measures["linear_cka"] = float(item["linear_cka"])
        se = item.get("linear_cka_se")
        if se is not None and thresholds.leave_out is not None:  # kept with groups only
            low, high = normal_interval(measures["linear_cka"], float(se))
            measures["linear_cka_estimate"] = Estimate(measures["linear_cka"], float(se), low, high)
    return fields, measures


# ---- schema checks ----------------------------------------------------------------------------


def _is_unit_number(v: Any) -> bool:
    return (
        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= MAX_EPS
    )


def check_thresholds_dict(d: Any, where: str) -> None:
    """A saved thresholds object, checked field by field: ValueError naming ``where``."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be an object, got {type(d).__name__}")
    missing = {"x", "y", "dead_x", "dead_y", "n_samples", "count_dead"} - set(d)
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    sizes = {}
    for side in ("x", "y"):
        values = d[side]
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}.{side} must be a non-empty list of critical eps")
        for v in values:  # None stands for inf (dead neurons, or never matched)
            if v is not None and not _is_unit_number(v):
                raise ValueError(f"{where}.{side} holds {v!r}; a critical eps is a number in [0, 1] or null")
        sizes[side] = len(values)
    for side in ("x", "y"):
        dead = d[f"dead_{side}"]
        if not isinstance(dead, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < sizes[side] for i in dead
        ):
            raise ValueError(f"{where}.dead_{side} must list neuron indices in [0, {sizes[side]})")
        if len(set(dead)) != len(dead):
            raise ValueError(f"{where}.dead_{side} lists a neuron twice")
        values = d[side]
        if any(values[i] is not None for i in dead):
            raise ValueError(f"{where}.dead_{side} names a neuron with a finite critical eps")
    n_samples = d["n_samples"]
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"{where}.n_samples must be an int >= 1, got {n_samples!r}")
    if not isinstance(d["count_dead"], bool):
        raise ValueError(f"{where}.count_dead must be true or false, got {d['count_dead']!r}")
    if not isinstance(d.get("centered", False), bool):
        raise ValueError(f"{where}.centered must be true or false, got {d['centered']!r}")
    leave_out = d.get("leave_out")
    if leave_out is not None:
        if not isinstance(leave_out, list) or len(leave_out) < 2:
            raise ValueError(f"{where}.leave_out must list 2 or more jackknife thresholds, or be null")
        for k, item in enumerate(leave_out):
            check_thresholds_dict(item, f"{where}.leave_out[{k}]")
            if "leave_out" in item or (len(item["x"]), len(item["y"])) != (sizes["x"], sizes["y"]):
                raise ValueError(f"{where}.leave_out[{k}] must have the sizes of {where} and no leave_out")


def _check_eps_list(eps: Any) -> None:
    if not isinstance(eps, list) or not eps:
        raise ValueError("eps must be a non-empty list of numbers in [0, 1]")
    for e in eps:
        if not _is_unit_number(e):
            raise ValueError(f"eps holds {e!r}; each must be a number in [0, 1]")


def check_comparison_dict(d: Any) -> None:
    """A saved comparison (what ``Comparison.save`` writes), checked field by field: ValueError
    naming the first malformed field."""
    if not isinstance(d, dict) or d.get("format") != "nsm-comparison":
        raise ValueError("not an nsm comparison (expected the JSON that Comparison.save writes)")
    _check_eps_list(d.get("eps"))
    layers = d.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError("layers must be a non-empty list")
    names = set()
    for k, item in enumerate(layers):
        where = f"layers[{k}]"
        if not isinstance(item, dict) or "name" not in item or "thresholds" not in item:
            raise ValueError(f"{where} must be an object with a name and thresholds")
        name = item["name"]
        if isinstance(name, list) and len(name) == 2 and all(isinstance(p, str) for p in name):
            name = tuple(name)
        elif not isinstance(name, str):
            raise ValueError(f"{where}.name must be a layer name or a [name_a, name_b] pair, got {name!r}")
        if name in names:
            raise ValueError(f"{where}.name {item['name']!r} appears twice")
        names.add(name)
        check_thresholds_dict(item["thresholds"], f"{where}.thresholds")
        base = item.get("baseline_thresholds")
        if base is not None:
            check_thresholds_dict(base, f"{where}.baseline_thresholds")
        cka = item.get("linear_cka")
        if cka is not None and not _is_unit_number(cka):
            raise ValueError(f"{where}.linear_cka holds {cka!r}; it must be a number in [0, 1] or null")
        if not isinstance(item.get("few_samples", False), bool):
            raise ValueError(f"{where}.few_samples must be true or false, got {item['few_samples']!r}")
        if item.get("precision") not in (None, *PRECISIONS):
            raise ValueError(
                f"{where}.precision must be one of {', '.join(PRECISIONS)}, got {item['precision']!r}"
            )


def check_cross_dict(d: Any) -> None:
    """A saved grid (what ``CrossComparison.save`` writes): its format, ε, flags and every
    compared pair's thresholds checked as a comparison's are (ValueError naming the field)."""
    if not isinstance(d, dict) or d.get("format") != "nsm-cross-comparison":
        raise ValueError("not an nsm cross comparison (expected the JSON that CrossComparison.save writes)")
    _check_eps_list(d.get("eps"))
    for flag in ("count_dead", "centered"):
        if flag in d and not isinstance(d[flag], bool):
            raise ValueError(f"{flag} must be true or false, got {d[flag]!r}")
    pairs = d.get("pairs")
    if not isinstance(pairs, list):
        raise ValueError("pairs must be a list")
    for k, item in enumerate(pairs):
        where = f"pairs[{k}]"
        if not isinstance(item, dict) or "site_a" not in item or "site_b" not in item:
            raise ValueError(f"{where} must be an object with site_a and site_b")
        if "reason" in item:
            continue
        if not isinstance(item.get("measures"), dict):
            raise ValueError(f"{where}.measures must be an object of the pair's measures")
        check_thresholds_dict(item.get("thresholds"), f"{where}.thresholds")
        base = item.get("baseline_thresholds")
        if base is not None:
            check_thresholds_dict(base, f"{where}.baseline_thresholds")


# ---- files ------------------------------------------------------------------------------------


#: The key of a Grams file that ties it to the JSON it was saved beside (the SHA-256 of that
#: JSON's text): a comparison loads only its own Grams.
_IDENTITY = "__json_sha256__"


def _identity(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_result(path: Any, d: dict, grams: Iterable[tuple[str, Gram | None]] | None) -> None:
    """Write the result ``d`` as indented JSON at ``path`` and, with ``grams``, its Grams beside
    it (:func:`save_grams`), each file atomically (nsm._files: a failure leaves the old file).
    The Grams file carries the JSON's digest, so that :func:`load_result` attaches no other
    comparison's Grams; saved without Grams, an older Grams file beside ``path`` (which belonged
    to the JSON just replaced) is removed."""
    text = json.dumps(d, indent=1)
    with atomic_write(path) as f:
        f.write(text)
    if grams is not None:
        save_grams(path, grams, _identity(text))
    elif os.path.lexists(grams_path(path)):
        os.remove(grams_path(path))


def load_result(path: Any) -> tuple[Any, dict[str, Gram]]:
    """The JSON at ``path`` and the Grams saved beside it ({} when none were). A Grams file
    saved beside another JSON (its digest differs) raises ValueError; one from before the
    digest was kept is returned as it is, for the caller to check against the layers' sizes."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        d = json.loads(text)
    except RecursionError:
        where = os.fspath(path)
        raise ValueError(f"{where} is not a saved nsm result: its JSON is nested too deeply") from None
    return d, load_grams(path, _identity(text))


def grams_path(path: Any) -> str:
    """Where the Grams of the comparison saved at ``path`` go."""
    return os.fspath(path) + ".grams.npz"


def save_grams(path: Any, grams: Iterable[tuple[str, Gram | None]], identity: str) -> None:
    """Write ``(name, Gram)`` pairs (None skipped) beside the comparison saved at ``path``: each
    Gram whole, as :meth:`nsm.Gram.save` writes it (jackknife groups, precision, whether its
    column sums are known), under ``<name>.<field>``, and the ``identity`` of the JSON."""
    arrays: dict[str, Any] = {_IDENTITY: np.array(identity)}
    for name, g in grams:
        if g is not None:
            arrays.update({f"{name}.{field}": v for field, v in npz.to_arrays(g.parts()).items()})
    with atomic_write(grams_path(path), binary=True) as f:
        np.savez(f, **arrays)


def load_grams(path: Any, identity: str | None = None) -> dict[str, Gram]:
    """The Grams saved beside the comparison at ``path``, by name ({} when none were saved).
    With ``identity`` (the digest of the JSON read), a Grams file that records another JSON's
    raises ValueError. Files from before the Grams were saved whole (``<name>_matrix``,
    ``_sums``, ``_meta``) load as plain Grams."""
    file = grams_path(path)
    if not os.path.exists(file):
        return {}
    fields: dict[str, dict[str, Any]] = {}
    out = {}
    with np.load(file, allow_pickle=False) as f:
        if identity is not None and _IDENTITY in f.files and str(f[_IDENTITY]) != identity:
            raise ValueError(
                f"{file} holds the Grams of another comparison than {os.fspath(path)} (saved "
                "beside an earlier or a different file): remove it, or save the comparison again "
                "with grams=True"
            )
        for key in f.files:
            if "." in key:
                name, field = key.split(".", 1)
                fields.setdefault(name, {})[field] = f[key]
            elif key.endswith("_matrix"):
                name = key[: -len("_matrix")]
                n_x, n_samples = (int(v) for v in f[f"{name}_meta"])
                out[name] = Gram.from_matrix(f[key], n_x, n_samples, column_sums=f[f"{name}_sums"])
    for name, values in fields.items():
        where = f"{file}: {name}"
        try:
            out[name] = Gram.from_parts(npz.from_arrays(values, where))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {exc}") from exc
    return out
