"""Synthetic post-ReLU layers for the benchmarks: two networks that share some features."""

from __future__ import annotations

import os

import numpy as np

# NSM_BENCH_SCALE=small runs every case on small data (a smoke test, as CI does).
SMALL = os.environ.get("NSM_BENCH_SCALE", "") == "small"


def related_relu_layers(d: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 layers of n post-ReLU neurons on d samples. Each neuron mixes features from a
    pool both networks share and from a pool of its own network, in a proportion that varies by
    neuron, plus noise; about 3% of the neurons are dead. The maximum-match similarity climbs
    from about 0.5 at eps = 0.15 to about 0.95 at eps = 0.5."""
    rng = np.random.default_rng(seed)
    pool = max(n // 2, 4)
    latent = 32
    z = rng.standard_normal((d, latent), dtype=np.float32)
    shared = z @ rng.standard_normal((latent, pool), dtype=np.float32)
    shared += rng.normal(0, 0.5, pool).astype(np.float32)
    np.maximum(shared, 0, out=shared)
    layers = []
    for _ in range(2):
        own = rng.standard_normal((d, latent), dtype=np.float32) @ rng.standard_normal(
            (latent, pool), dtype=np.float32
        )
        np.maximum(own, 0, out=own)
        mix_shared = rng.random((pool, n), dtype=np.float32) * (rng.random((pool, n)) < 0.05)
        mix_own = rng.random((pool, n), dtype=np.float32) * (rng.random((pool, n)) < 0.05)
        w = rng.uniform(0, 1, n).astype(np.float32) ** 2
        a = shared @ (mix_shared * (1 - w)) + own @ (mix_own * w)
        a += 0.05 * rng.standard_normal((d, n), dtype=np.float32)
        np.maximum(a, 0, out=a)
        a[:, rng.random(n) < 0.03] = 0
        layers.append(a)
    return layers[0], layers[1]
