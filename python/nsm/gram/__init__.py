"""The Gram: the one currency between the stages. Activations are accumulated into it
(:class:`Gram`), everything downstream reads its parts (:class:`GramParts`), jackknife groups are
dealt by one dealer (:class:`GroupDealer`), the centred Gram comes from its column sums
(:func:`centered_matrix`), and its file codec is :mod:`nsm.gram.npz`."""

from __future__ import annotations

from .centering import centered_matrix, constant_cutoff, rank_cutoff
from .gram import Gram
from .parts import GramParts, GroupDealer, GroupPart

__all__ = [
    "Gram",
    "GramParts",
    "GroupDealer",
    "GroupPart",
    "centered_matrix",
    "constant_cutoff",
    "rank_cutoff",
]
