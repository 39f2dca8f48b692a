"""A layer pair's Gram accumulated where its activations live: nsm.Gram's C++ kernels for
CPU tensors (read in place, channels-first views included), float64 torch matmuls on other
devices. The comparison and its baseline both accumulate through this one class."""

from __future__ import annotations

import numpy as np
import torch

from ..gram import Gram
from ..validation import check_threads
from .layout import n_samples, to_2d

__all__ = ["CORE_ON_CPU", "DeviceGram"]

# CPU activations go to nsm's C++ Gram kernels; False sends them through the float64 torch
# matmuls used on GPUs (the tests use it to check that path without a GPU).
CORE_ON_CPU = True


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """A float32/float64 numpy view of a CPU tensor (other dtypes are converted)."""
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.numpy()


class DeviceGram:
    """Gram matrix and column sums of ``[X Y]`` over the samples added so far."""

    def __init__(self, n_x: int, n_y: int, device: torch.device) -> None:
        self.n_x, self.n_y, self.device = n_x, n_y, device
        self.core = device.type == "cpu" and CORE_ON_CPU
        if self.core:
            self.gram: Gram | None = Gram(n_x, n_y)
        else:
            self.gram = None
            n = n_x + n_y
            self.matrix = torch.zeros(n, n, dtype=torch.float64, device=device)
            self.sums = torch.zeros(n, dtype=torch.float64, device=device)
            self.count = 0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add samples: ``a`` and ``b`` are sample_rows results with as many samples each."""
        if self.gram is not None:
            self.gram._add_views(numpy_view(a), numpy_view(b), check_threads(torch.get_num_threads()))
            return
        block = torch.cat([to_2d(a), to_2d(b)], dim=1).to(torch.float64)
        if not bool(torch.isfinite(block).all()):
            raise ValueError("activations contain NaN or Inf")
        self.matrix.addmm_(block.T, block)
        self.sums += block.sum(dim=0)
        self.count += n_samples(a)

    @property
    def n_samples(self) -> int:
        return self.gram.n_samples if self.gram is not None else self.count

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(Gram, column sums, samples) as float64 tensors, for a sum across processes."""
        if self.gram is not None:
            return (torch.from_numpy(np.array(self.gram.matrix)),
                    torch.from_numpy(self.gram.column_sums), self.gram.n_samples)
        return self.matrix, self.sums, self.count

    def result(self) -> Gram:
        """The accumulated Gram as an nsm.Gram (no copy on the CPU)."""
        if self.gram is not None:
            return self.gram
        return Gram.from_matrix(self.matrix.cpu().numpy(), self.n_x, self.count,
                                column_sums=self.sums.cpu().numpy())


def gram_from_parts(matrix: torch.Tensor, sums: torch.Tensor, count: int, n_x: int) -> Gram:
    return Gram.from_matrix(matrix.cpu().numpy(), n_x, int(count), column_sums=sums.cpu().numpy())
