from __future__ import annotations

import os

import numpy as np
import pytest

# NSM_HYPOTHESIS_SCALE=10 runs every property test with ten times its examples (a thorough run
# before a release; the default keeps the suite near a minute).
HYPOTHESIS_SCALE = int(os.environ.get("NSM_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    """A property test's example count, scaled by NSM_HYPOTHESIS_SCALE."""
    return n * HYPOTHESIS_SCALE


def related_layers(rng: np.random.Generator, d: int, n_x: int, n_y: int, shared: int = 6,
                   noise: float = 0.3, relu: bool = True):
    """Two layers driven by common latent factors, plus private noise, quantized to multiples
    of 1/64 so that float32 copies and small-integer combinations of columns are exact."""
    z = rng.standard_normal((d, shared))
    X = z @ rng.standard_normal((shared, n_x)) + noise * rng.standard_normal((d, n_x))
    Y = z @ rng.standard_normal((shared, n_y)) + noise * rng.standard_normal((d, n_y))
    if relu:
        X, Y = np.maximum(X, 0), np.maximum(Y, 0)
    return np.round(X * 64) / 64, np.round(Y * 64) / 64


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
