"""The Grams a saved comparison keeps beside its JSON (``<path>.grams.npz``), so that what needs
a Gram (simple matches, other measures) works after loading. ``Comparison`` and
``CrossComparison`` both write and read them here, each Gram in the Gram's own codec
(:mod:`nsm.gram.npz`) under a prefix of its name."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .gram import Gram, npz

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
            arrays.update({f"{name}.{field}": v for field, v in npz.to_arrays(g.parts()).items()})
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
        where = f"{file}: {name}"
        try:
            out[name] = Gram.from_parts(npz.from_arrays(values, where))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {exc}") from exc
    return out
