"""Test cases shared by the test modules: layers with known structure, the nasty layers that
Hypothesis draws, input layouts, and the reference example of the authors' script."""

from __future__ import annotations

import os
import warnings

import numpy as np
from hypothesis import strategies as st

import nsm

# NSM_HYPOTHESIS_SCALE=10 runs every property test with ten times its examples (a thorough run
# before a release; the default keeps the suite near a minute).
HYPOTHESIS_SCALE = int(os.environ.get("NSM_HYPOTHESIS_SCALE", "1"))


def examples(n: int) -> int:
    """A property test's example count, scaled by NSM_HYPOTHESIS_SCALE."""
    return n * HYPOTHESIS_SCALE


# The reference example of the authors' script (docs/method.md, "Reference values"): each
# inner list is one neuron over 6 samples.
REFERENCE_X = np.array([[1, 0.5, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]).T
REFERENCE_Y = np.array(
    [[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0.5, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]]
).T


def related_layers(
    rng: np.random.Generator,
    d: int,
    n_x: int,
    n_y: int,
    shared: int = 6,
    noise: float = 0.3,
    relu: bool = True,
):
    """Two layers driven by common latent factors, plus private noise, quantized to multiples
    of 1/64 so that float32 copies and small-integer combinations of columns are exact."""
    z = rng.standard_normal((d, shared))
    X = z @ rng.standard_normal((shared, n_x)) + noise * rng.standard_normal((d, n_x))
    Y = z @ rng.standard_normal((shared, n_y)) + noise * rng.standard_normal((d, n_y))
    if relu:
        X, Y = np.maximum(X, 0), np.maximum(Y, 0)
    return np.round(X * 64) / 64, np.round(Y * 64) / 64


def quiet(fn, *args, **kwargs):
    """Call fn with the few-samples warning silenced (tests that mean to use few samples)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nsm.FewSamplesWarning)
        return fn(*args, **kwargs)


@st.composite
def nasty_layers(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    d = draw(st.integers(2, 90))
    n_x = draw(st.integers(1, 10))
    n_y = draw(st.integers(1, 10))
    X, Y = related_layers(
        rng,
        d,
        n_x,
        n_y,
        shared=draw(st.integers(1, 6)),
        noise=draw(st.sampled_from([0.0, 0.1, 0.5])),
        relu=draw(st.booleans()),
    )
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["dup", "comb", "zero"]))
        on_x = draw(st.booleans())
        a = X if on_x else Y
        i, j = rng.integers(a.shape[1], size=2)
        if op == "dup":
            col = a[:, [i]]
        elif op == "comb":
            c1, c2 = draw(st.sampled_from([(1, 1), (2, -1), (1, -3), (0.5, 2)]))
            col = c1 * a[:, [i]] + c2 * a[:, [j]]
        else:
            col = np.zeros((d, 1))
        a = np.hstack([a, col])
        if on_x:
            X = a
        else:
            Y = a
    layout = draw(st.sampled_from(["C", "F", "strided", "float32"]))
    return X, Y, layout


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        wide = np.zeros((a.shape[0], 2 * a.shape[1]))
        wide[:, ::2] = a
        return wide[:, ::2]
    if layout == "float32":
        return a.astype(np.float32)
    return np.ascontiguousarray(a)
