"""The shifted-batch baseline: batch i of model A against batch i-1 of model B.

It keeps each layer's statistics and breaks the pairing of samples, so its similarity says
what "unrelated" looks like for these layers. It is accumulated as a Gram of its own, from the
re-paired samples themselves (never as a difference of Grams, which would round below zero
and leave residues of neurons that only the first batch activates).
"""

from __future__ import annotations

from typing import Any

import torch

from .accumulate import DeviceGram
from .layout import n_samples, to_2d
from .site_blocks import SiteBlocks

__all__ = ["ShiftedBaseline"]


class ShiftedBaseline:
    """Accumulates ``[A_i, B_(i-1)]`` over batches i >= 1, paired sample by sample; when the
    two batches differ in size, only the first min(len) samples of each are paired."""

    def __init__(self, acc: DeviceGram | SiteBlocks, copy: bool = True) -> None:
        # ``acc`` accumulates the re-paired samples: a pair's Gram (compare) or a grid's blocks
        # (compare_all).
        self.acc: Any = acc  # either; each caller reads the kind it made
        self.previous_b: torch.Tensor | None = None
        # A site may return a buffer that the next forward pass overwrites (its own, or a
        # preallocated output): batch i-1's rows are kept as a copy of the values the site
        # returned, unless the caller's rows are new tensors already (``copy=False``).
        self.copy = copy

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add batch i (``a`` of model A, ``b`` of model B, as sample_rows results)."""
        prev, self.previous_b = self.previous_b, b.clone() if self.copy else b
        if prev is None:
            return
        if n_samples(a) == n_samples(prev) and a.ndim == prev.ndim and a.shape[0] == prev.shape[0]:
            self.acc.update(a, prev)
            return
        m = min(n_samples(a), n_samples(prev))
        self.acc.update(to_2d(a)[:m], to_2d(prev)[:m])
