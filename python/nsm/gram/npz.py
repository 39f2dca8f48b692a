"""The Gram's file format: a :class:`~nsm.gram.GramParts` as named arrays of an ``.npz`` file
(``Gram.save``'s file, and each Gram saved beside a comparison under a prefix of its own).

Fields: ``matrix``, ``column_sums``, ``n_x``, ``n_samples``; since the precision and the groups
were saved, ``sums_known``, ``precision`` and, with jackknife groups, ``group_matrices``,
``group_sums``, ``group_counts``, ``group_dealt``. Files without the later fields load with the
defaults they were written under (sums known, float64)."""

from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from .._files import atomic_write
from .parts import GramParts, GroupPart

__all__ = ["from_arrays", "load", "save", "to_arrays"]

FIELDS = ("matrix", "column_sums", "n_x", "n_samples")
GROUP_FIELDS = ("group_matrices", "group_sums", "group_counts", "group_dealt")
OPTIONAL_FIELDS = ("sums_known", "precision")


def to_arrays(parts: GramParts) -> dict[str, Any]:
    """The named arrays that make ``parts`` again (:func:`from_arrays`)."""
    out: dict[str, Any] = dict(
        matrix=parts.matrix,
        column_sums=parts.column_sums,
        n_x=np.int64(parts.n_x),
        n_samples=np.int64(parts.n_samples),
        sums_known=np.int64(parts.sums_known),
        precision=np.array(parts.precision),
    )
    if parts.groups is not None:
        out["group_matrices"] = np.stack([g.matrix for g in parts.groups])
        out["group_sums"] = np.stack([g.column_sums for g in parts.groups])
        out["group_counts"] = np.array([g.n_samples for g in parts.groups], dtype=np.int64)
        out["group_dealt"] = np.int64(parts.dealt)
    return out


def from_arrays(values: dict[str, Any], where: str) -> GramParts:
    """The parts that :func:`to_arrays` wrote (``where`` names the file in errors). The fields'
    kinds are checked here; the matrices themselves by :meth:`nsm.Gram.from_parts`."""
    present = _check_names(values, where)
    for name in ("n_x", "n_samples", "sums_known", "group_dealt"):
        if name not in values:
            continue
        v = values[name]
        if v.ndim != 0 or v.dtype.kind not in "iu":
            raise ValueError(f"{where}: saved {name} must be an integer, got {v!r}")
    precision = "float64"
    if "precision" in values:
        p = values["precision"]
        if p.ndim != 0 or p.dtype.kind != "U":
            raise ValueError(f"{where}: saved precision must be a string, got {p!r}")
        precision = str(p)
    groups = None
    if present:
        counts = values["group_counts"]
        if counts.ndim != 1 or counts.dtype.kind not in "iu" or len(counts) < 2:
            raise ValueError(f"{where}: saved group_counts must be 2 or more integers, got {counts!r}")
        matrices, sums = values["group_matrices"], values["group_sums"]
        groups = tuple(GroupPart(matrices[k], sums[k], int(c)) for k, c in enumerate(counts))
    return GramParts(
        matrix=values["matrix"],
        column_sums=values["column_sums"],
        n_samples=int(values["n_samples"]),
        n_x=int(values["n_x"]),
        precision=precision,  # type: ignore[arg-type]  # checked by Gram.from_parts
        sums_known=int(values["sums_known"]) != 0 if "sums_known" in values else True,
        groups=groups,
        dealt=int(values["group_dealt"]) if present else 0,
    )


def _check_names(names: Any, where: str) -> list[str]:
    """The group fields among ``names``, after refusing a set without the Gram's own fields or
    with only some of the group fields."""
    missing = set(FIELDS) - set(names)
    if missing:
        raise ValueError(f"{where} is not a saved nsm Gram (missing {', '.join(sorted(missing))})")
    present = [k for k in GROUP_FIELDS if k in names]
    if present and len(present) != len(GROUP_FIELDS):
        raise ValueError(
            f"{where} is a damaged nsm Gram (missing {', '.join(sorted(set(GROUP_FIELDS) - set(present)))})"
        )
    return present


def file_name(path: Any) -> str:
    """The one rule for a Gram's file name, the same for save and load: ``path`` as given when
    it ends in ``.npz``, else with ``.npz`` added (``Gram.save("name")`` writes ``name.npz``, and
    ``Gram.load("name")`` reads it; load reads a file of exactly the given name when there is
    no ``.npz`` one)."""
    path = os.fspath(path)
    return path if path.endswith(".npz") else path + ".npz"


def save(path: Any, parts: GramParts) -> None:
    """Write ``parts`` to the ``.npz`` file of ``path`` (:func:`file_name`), atomically: a
    failed save leaves the old file as it was."""
    arrays = to_arrays(parts)
    with atomic_write(file_name(path), binary=True) as f:
        np.savez(f, **arrays)


def _check_declared_size(archive: zipfile.ZipFile, name: str, where: str) -> None:
    """Refuse a member whose header declares more bytes than the member holds, before anything
    is allocated (a crafted 3 MiB file must not make nsm allocate 3 GiB)."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(member)
        declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        held = info.file_size - member.tell()
    if declared > held:
        raise ValueError(
            f"{where} is a damaged nsm Gram: {name} declares {shape} {dtype} ({declared} bytes) "
            f"but holds {held} bytes"
        )


def load(path: Any) -> GramParts:
    """The parts of the Gram saved at ``path``; a file that is not one raises ValueError."""
    given, path = os.fspath(path), file_name(path)
    if not os.path.exists(path) and os.path.exists(given):
        path = given  # a file named exactly so (not one nsm named): read it, and say what it is
    not_gram = f"{path} is not a saved nsm Gram (an .npz file written by Gram.save)"
    with open(path, "rb") as handle:
        try:
            archive = np.load(handle, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{not_gram}: {exc}") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{not_gram}: it holds a single array")
        with archive as f:
            _check_names(f.files, str(path))
            wanted = [k for k in (*FIELDS, *GROUP_FIELDS, *OPTIONAL_FIELDS) if k in f.files]
            try:
                for k in wanted:
                    _check_declared_size(f.zip, k, str(path))
                values = {k: f[k] for k in wanted}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{path} is a damaged nsm Gram: {exc}") from exc
    return from_arrays(values, str(path))
