"""Sums across the processes of a torch.distributed run: every rank streams its own shard, the
Grams are added, and every rank gets the same result. A rank that saw no batch, or failed,
takes part in every collective all the same, so no rank is left waiting."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["agree", "all_reduce_parts", "running"]


def running() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def agree(description: Any, error: BaseException | None) -> Any:
    """Exchange what each rank found (``description``, None for a rank with no batch) and
    whether it failed. Raises on every rank if one failed or two ranks disagree; returns the
    description of the ranks that saw data (None if none did)."""
    dist = torch.distributed
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(
        found, (description, None if error is None else f"{type(error).__name__}: {error}")
    )
    for rank, (_, message) in enumerate(found):
        if message is not None and error is None:
            raise RuntimeError(f"nsm.torch.compare failed on rank {rank}: {message}")
    if error is not None:
        raise error
    seen = [(rank, d) for rank, (d, _) in enumerate(found) if d is not None]
    for rank, d in seen[1:]:
        if d != seen[0][1]:
            raise ValueError(
                f"ranks {seen[0][0]} and {rank} found different sites or layer sizes: "
                f"{seen[0][1]} against {d}"
            )
    return seen[0][1] if seen else None


def all_reduce_parts(
    matrix: torch.Tensor, sums: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sum a Gram's parts over all ranks; every rank gets the total."""
    dist = torch.distributed
    device = matrix.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    packed = torch.cat(
        [matrix.reshape(-1), sums, torch.tensor([float(count)], dtype=torch.float64, device=matrix.device)]
    ).to(device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    n = matrix.shape[0]
    packed = packed.to(matrix.device)
    return packed[: n * n].reshape(n, n), packed[n * n : n * n + n], int(round(packed[-1].item()))
