"""A Gram's parts: the one record the stages pass between them (the Gram's matrix, column sums,
sample count, layer split, the pass that made it and its jackknife groups), and the dealer of
batches to jackknife groups that every accumulator uses."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..validation import Precision

__all__ = ["GramParts", "GroupDealer", "GroupPart"]


class GroupPart(NamedTuple):
    """One jackknife group's Gram matrix (n, n), column sums (n,) and sample count."""

    matrix: np.ndarray
    column_sums: np.ndarray
    n_samples: int


@dataclass(frozen=True)
class GramParts:
    """Everything a :class:`nsm.Gram` holds, as plain arrays: what :meth:`nsm.Gram.parts` gives
    and :meth:`nsm.Gram.from_parts` takes (and what nsm.torch sums across processes, the file
    codec writes and the grid assembles from its blocks).

    Attributes
    ----------
    matrix : ndarray (n, n)
        The symmetric float64 Gram matrix ``[X Y]ᵀ[X Y]``.
    column_sums : ndarray (n,)
        The column sums of ``[X Y]`` (zeros when unknown: see ``sums_known``).
    n_samples : int
        The samples summed over.
    n_x : int
        The first ``n_x`` neurons are layer X's.
    precision : {"float64", "mixed"}
        The pass that made it (its rounding sets the measures' rank cutoff).
    sums_known : bool
        False for a Gram given without its column sums (the centred match refuses it).
    groups : tuple of GroupPart, or None
        Each jackknife group's parts (they add up to the total), or None without groups.
    dealt : int
        Batches dealt to the groups so far (the next goes to group ``dealt % K``).

    Examples
    --------
    >>> import numpy as np, nsm
    >>> parts = nsm.Gram.from_arrays(np.eye(3), np.ones((3, 1))).parts()
    >>> parts.n_x, parts.n_y, parts.n_samples, parts.groups
    (3, 1, 3, None)
    >>> nsm.Gram.from_parts(parts).matrix[3].tolist()
    [1.0, 1.0, 1.0, 3.0]
    """

    matrix: np.ndarray
    column_sums: np.ndarray
    n_samples: int
    n_x: int
    precision: Precision = "float64"
    sums_known: bool = True
    groups: tuple[GroupPart, ...] | None = None
    dealt: int = 0

    @property
    def n(self) -> int:
        """Neurons of both layers."""
        return int(self.matrix.shape[0])

    @property
    def n_y(self) -> int:
        """Neurons of layer Y."""
        return self.n - self.n_x


class GroupDealer:
    """Deals batches to ``K`` jackknife groups in turn (round-robin): the next batch that holds
    samples goes to group ``dealt % K``; a batch without samples is no unit of the jackknife and
    goes to none. The CPU Gram, nsm.torch's device Gram and a grid's blocks deal through it, so
    that the same batches land in the same groups whichever accumulator took them.

    Examples
    --------
    >>> from nsm.gram import GroupDealer
    >>> d = GroupDealer(3)
    >>> [d.deal(n) for n in (5, 5, 0, 5, 5)], d.dealt
    ([0, 1, None, 2, 0], 4)
    >>> GroupDealer(None).deal(5) is None
    True
    """

    def __init__(self, groups: int | None, dealt: int = 0) -> None:
        self.groups = groups
        self.dealt = dealt
        self.lock = threading.Lock()

    def deal(self, n_samples: int) -> int | None:
        """The group the next batch of ``n_samples`` samples goes to (None: no group)."""
        if self.groups is None or n_samples == 0:
            return None
        k = self.dealt % self.groups
        self.dealt += 1
        return k


def read_only(*arrays: Any) -> None:
    """Mark arrays that a Gram hands out as read-only."""
    for a in arrays:
        a.setflags(write=False)
