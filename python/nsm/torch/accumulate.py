"""A layer pair's Gram accumulated where its activations live: nsm.Gram's C++ kernels for
CPU tensors (read in place, channels-first views included), torch matmuls on other devices,
with the same two precisions as nsm.Gram: "float64" (float64 products) and "mixed" (float32
products over blocks of 2,048 rows in IEEE float32, each block added into the float64 Gram). A
comparison and its baseline accumulate through this class; a grid of compare_all keeps only the
blocks its pairs read (nsm.torch.site_blocks), with the same arithmetic."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import _core
from .._validation import DEFAULT_PRECISION, Precision, check_threads
from ..gram import Gram, GramParts, GroupDealer, GroupPart
from ..starved import FEW_SAMPLES_RATIO
from .layout import n_samples, to_2d

__all__ = ["CORE_ON_CPU", "DeviceGram", "pass_for"]

# CPU activations go to nsm's C++ Gram kernels; False sends them through the float64 torch
# matmuls used on GPUs (the tests use it to check that path without a GPU).
CORE_ON_CPU = True

# The mixed pass on a GPU, as nsm.Gram's (read from the core, cpp/include/nsm/gram.hpp): rows
# per float32 block, and the magnitudes outside which a batch takes the float64 pass.
MIXED_ROWS: int = _core.MIXED_BLOCK_ROWS
MIXED_MAX_ABS: float = _core.MIXED_MAX_ABS
MIXED_MIN_ABS: float = _core.MIXED_MIN_ABS
_LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)


@contextlib.contextmanager
def _ieee_matmul() -> Iterator[None]:
    """float32 matmuls in float32 (IEEE), on the GPU and on the CPU alike: not TF32 and not the
    bf16 of a CPU with AMX (their 10- and 8-bit mantissas would break the mixed pass's bound),
    whatever ``torch.set_float32_matmul_precision`` the user chose; the settings come back
    afterwards. Torch's per-backend API where it has one (2.9 and later), else its legacy
    TF32 switch."""
    cuda = torch.backends.cuda.matmul
    if hasattr(cuda, "fp32_precision"):
        cpu = torch.backends.mkldnn.matmul  # type: ignore[attr-defined]
        saved = (cuda.fp32_precision, cpu.fp32_precision)
        cuda.fp32_precision = cpu.fp32_precision = "ieee"
        try:
            yield
        finally:
            cuda.fp32_precision, cpu.fp32_precision = saved
        return
    allowed = cuda.allow_tf32
    cuda.allow_tf32 = False
    try:
        yield
    finally:
        cuda.allow_tf32 = allowed


def takes_mixed_pass(precision: Precision, dtypes: tuple[torch.dtype, ...], largest: float) -> bool:
    """Whether a block of rows takes the mixed pass, as nsm.Gram's core decides: precision
    "mixed", every input float32 or narrower, and the block's largest |value| strictly between
    MIXED_MIN_ABS and MIXED_MAX_ABS (its float32 products neither overflow nor lose the small
    neurons); otherwise the float64 pass."""
    return (
        precision == "mixed"
        and all(d in _LOW_PRECISION for d in dtypes)
        and MIXED_MIN_ABS < largest < MIXED_MAX_ABS
    )


def pass_for(precision: Precision, samples: int, neurons: int) -> Precision:
    """The pass for rows that bring a pair (or a grid's widest pair) of ``neurons`` neurons to
    ``samples`` samples: the mixed pass's float32 products move critical ε of a pair with few
    samples for its neurons (by up to 0.26 at 64 samples for 64 + 64 neurons), so under
    "mixed" the rows up to the starved threshold (``FEW_SAMPLES_RATIO`` samples per neuron,
    :mod:`nsm.starved`) take the float64 pass: a starved pair is float64 throughout, a
    well-sampled one mixed after its first few samples."""
    if precision == "mixed" and samples < FEW_SAMPLES_RATIO * neurons:
        return "float64"
    return precision


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """A float32/float64 numpy view of a CPU tensor (other dtypes are converted)."""
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.numpy()


class DeviceGram:
    """Gram matrix and column sums of ``[X Y]`` over the samples added so far; with ``groups``
    also one per jackknife group, each update (one batch) going to the next group in turn."""

    def __init__(
        self,
        n_x: int,
        n_y: int,
        device: torch.device,
        precision: Precision = DEFAULT_PRECISION,
        groups: int | None = None,
    ) -> None:
        self.n_x, self.n_y, self.device, self.precision = n_x, n_y, device, precision
        self.groups = groups
        self.core = device.type == "cpu" and CORE_ON_CPU
        if self.core:
            self.gram: Gram | None = Gram(n_x, n_y, precision=precision, groups=groups)
        else:
            self.gram = None
            n = n_x + n_y
            self.matrix = torch.zeros(n, n, dtype=torch.float64, device=device)
            self.sums = torch.zeros(n, dtype=torch.float64, device=device)
            self.count = 0
            # Per group: [matrix, sums, count], each batch to the dealer's next group.
            self.group_parts: list[list[Any]] = [
                [torch.zeros_like(self.matrix), torch.zeros_like(self.sums), 0] for _ in range(groups or 0)
            ]
            self.dealer = GroupDealer(groups)

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add samples: ``a`` and ``b`` are sample_rows results with as many samples each."""
        precision = pass_for(self.precision, self.n_samples + n_samples(a), self.n_x + self.n_y)
        if self.gram is not None:
            self.gram.update_views(
                numpy_view(a),
                numpy_view(b),
                num_threads=check_threads(torch.get_num_threads()),
                precision=precision,
            )
            return
        if not self.group_parts:
            self._add_to(a, b, self.matrix, self.sums, precision)
            self.count += n_samples(a)
            return
        k = self.dealer.deal(n_samples(a))
        if k is None:  # a batch without samples is no unit of the jackknife
            return
        # The batch's own Gram (one product), added to its group and to the total.
        m, sums = torch.zeros_like(self.matrix), torch.zeros_like(self.sums)
        self._add_to(a, b, m, sums, precision)
        part = self.group_parts[k]
        part[0] += m
        part[1] += sums
        part[2] += n_samples(a)
        self.matrix += m
        self.sums += sums
        self.count += n_samples(a)

    def _add_to(
        self, a: torch.Tensor, b: torch.Tensor, matrix: torch.Tensor, sums: torch.Tensor, precision: Precision
    ) -> None:
        a2, b2 = to_2d(a), to_2d(b)
        low = precision == "mixed" and a2.dtype in _LOW_PRECISION and b2.dtype in _LOW_PRECISION
        block = torch.cat([a2, b2], dim=1).to(torch.float32 if low else torch.float64)
        if not bool(torch.isfinite(block).all()):
            raise ValueError("activations contain NaN or Inf")
        largest = float(block.abs().max()) if block.numel() else 0.0
        if takes_mixed_pass(precision, (a2.dtype, b2.dtype), largest):
            with _ieee_matmul():
                for start in range(0, block.shape[0], MIXED_ROWS):
                    part = block[start : start + MIXED_ROWS]
                    matrix += (part.T @ part).to(torch.float64)
            sums += block.sum(dim=0, dtype=torch.float64)
        else:
            block = block.to(torch.float64)
            matrix.addmm_(block.T, block)
            sums += block.sum(dim=0)

    @property
    def n_samples(self) -> int:
        return self.gram.n_samples if self.gram is not None else self.count

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(Gram, column sums, samples) as float64 tensors, for a sum across processes."""
        if self.gram is not None:
            return (
                torch.from_numpy(np.array(self.gram.matrix)),
                torch.from_numpy(self.gram.column_sums),
                self.gram.n_samples,
            )
        return self.matrix, self.sums, self.count

    def group_parts_of(self) -> tuple[list[tuple[torch.Tensor, torch.Tensor, int]], int]:
        """Each jackknife group's (Gram, column sums, samples) as float64 tensors, and the
        batches dealt; ([], 0) without groups."""
        if self.gram is not None:
            if self.gram.groups is None:
                return [], 0
            parts = self.gram.parts()
            assert parts.groups is not None
            return [
                (torch.from_numpy(np.array(m)), torch.from_numpy(np.array(s)), c) for m, s, c in parts.groups
            ], parts.dealt
        return [(m, s, int(c)) for m, s, c in self.group_parts], self.dealer.dealt

    def result(self) -> Gram:
        """The accumulated Gram as an nsm.Gram (no copy on the CPU)."""
        if self.gram is not None:
            return self.gram
        parts, dealt = self.group_parts_of()
        return gram_from_parts(self.matrix, self.sums, self.count, self.n_x, parts, dealt, self.precision)


def gram_from_parts(
    matrix: torch.Tensor,
    sums: torch.Tensor,
    count: int,
    n_x: int,
    groups: list[tuple[torch.Tensor, torch.Tensor, int]] | None = None,
    dealt: int = 0,
    precision: Precision = DEFAULT_PRECISION,
) -> Gram:
    """An nsm.Gram from a Gram's parts held as tensors on any device (and its jackknife
    groups' parts, when given), labelled with the pass that made it (the measures' rank cutoff
    reads it)."""
    return Gram.from_parts(
        GramParts(
            matrix=matrix.cpu().numpy(),
            column_sums=sums.cpu().numpy(),
            n_samples=int(count),
            n_x=n_x,
            precision=precision,
            groups=tuple(GroupPart(m.cpu().numpy(), s.cpu().numpy(), int(c)) for m, s, c in groups)
            if groups
            else None,
            dealt=dealt,
        )
    )
