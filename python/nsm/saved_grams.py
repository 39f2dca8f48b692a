"""The Grams a saved comparison keeps beside its JSON (``<path>.grams.npz``), so that what needs
a Gram (simple matches, other measures) works after loading. ``Comparison`` and
``CrossComparison`` both write and read them here."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .gram import Gram

__all__ = ["grams_path", "load_grams", "save_grams"]


def grams_path(path: Any) -> str:
    """Where the Grams of the comparison saved at ``path`` go."""
    return os.fspath(path) + ".grams.npz"


def save_grams(path: Any, grams: Iterable[tuple[str, Gram | None]]) -> None:
    """Write ``(name, Gram)`` pairs (None skipped) beside the comparison saved at ``path``: each
    Gram whole, as :meth:`nsm.Gram.save` writes it (jackknife groups, precision, whether its
    column sums are known), under ``<name>.<field>``."""
    arrays: dict[str, Any] = {}
    for name, g in grams:
        if g is not None:
            arrays.update({f"{name}.{field}": v for field, v in g._fields().items()})
    with open(grams_path(path), "wb") as f:
        np.savez(f, **arrays)


def load_grams(path: Any) -> dict[str, Gram]:
    """The Grams saved beside the comparison at ``path``, by name ({} when none were saved).
    Files from before the Grams were saved whole (``<name>_matrix``, ``_sums``, ``_meta``) load
    as plain Grams."""
    file = grams_path(path)
    if not os.path.exists(file):
        return {}
    fields: dict[str, dict[str, Any]] = {}
    out = {}
    with np.load(file, allow_pickle=False) as f:
        for key in f.files:
            if "." in key:
                name, field = key.split(".", 1)
                fields.setdefault(name, {})[field] = f[key]
            elif key.endswith("_matrix"):
                name = key[: -len("_matrix")]
                n_x, n_samples = (int(v) for v in f[f"{name}_meta"])
                out[name] = Gram.from_matrix(f[key], n_x, n_samples, column_sums=f[f"{name}_sums"])
    for name, values in fields.items():
        out[name] = Gram._from_fields(values, f"{file}: {name}")
    return out
