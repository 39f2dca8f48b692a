"""Small models for the torch tests (importable by spawned worker processes)."""

from __future__ import annotations

import os

import torch
from torch import nn


def small_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 12), nn.ReLU(),
        nn.Linear(12, 3),
    )


def image_batches(n_batches: int = 6, batch: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 1, 8, 8, generator=g), torch.zeros(batch)) for _ in range(n_batches)]


def transformer_block(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=24, dropout=0.1,
                                      batch_first=True)


def token_batches(n_batches: int = 5, batch: int = 32, tokens: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, tokens, 16, generator=g) for _ in range(n_batches)]


def distributed_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One rank of the two-process test: compare on this rank's shard, save the result."""
    import numpy as np

    import nsm.torch

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        data = image_batches(8)
        shard = data[rank::world]
        c = nsm.torch.compare(small_cnn(1), small_cnn(2), shard, ["1", "3"], progress=False)
        np.save(os.path.join(out_dir, f"gram{rank}.npy"), c["3"].gram.matrix)
        c.save(os.path.join(out_dir, f"result{rank}.json"))
    finally:
        torch.distributed.destroy_process_group()
