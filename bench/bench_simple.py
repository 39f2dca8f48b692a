"""v-minimal and simple matches against recomputing the maximum match from scratch at every
trial (what the authors' script does; here each recomputation is nsm's own max_match on the
sub-Gram, a faster baseline than their SVD on the activations).

Run: python -m pytest bench/bench_simple.py --benchmark-disable -s
"""

from __future__ import annotations

import numpy as np
import pytest

import nsm
from bench.layers import SMALL, related_relu_layers
from bench.timing import NOTES, RATIOS, TIMES, timed

D = 3000 if SMALL else 20_000
SIZES = (24, 48) if SMALL else (256, 512)
EPS = 0.3


def layers_gram(n: int) -> nsm.Gram:
    X, Y = related_relu_layers(D, n, seed=2)
    return nsm.Gram.from_arrays(X, Y)


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}+{n}")
def gram(request):
    return layers_gram(request.param)


def from_scratch_minimal(gram: nsm.Gram, eps: float, neuron: tuple[str, int]):
    """The authors' procedure: try X's neurons by index, then Y's; for each, recompute the
    maximum match of the rest from scratch; keep the removal if the neuron survives."""
    n_x, G = gram.n_x, gram.matrix
    v = neuron[1] if neuron[0] == "x" else n_x + neuron[1]
    mm = nsm.max_match(gram, eps)
    current = np.zeros(gram.n, dtype=bool)
    current[mm.x] = True
    current[n_x + mm.y] = True
    for u in range(gram.n):
        if u == v or not current[u]:
            continue
        trial = current.copy()
        trial[u] = False
        idx = np.flatnonzero(trial)
        k = int(np.count_nonzero(idx < n_x))
        if k == 0 or k == len(idx):
            continue  # one layer would be empty: v cannot survive
        sub = nsm.Gram.from_matrix(G[np.ix_(idx, idx)], k, gram.n_samples)
        m = nsm.max_match(sub, eps)
        kept = idx[m.x] if v < n_x else idx[k + m.y]
        if v in kept:
            current = trial
    return np.flatnonzero(current[:n_x]).tolist(), np.flatnonzero(current[n_x:]).tolist()


def test_one_minimal_match(run, gram):
    size = f"{gram.n_x}+{gram.n_y}"
    neuron = ("x", int(nsm.max_match(gram, EPS).x[0]))
    expected = timed(
        f"from scratch: one v-minimal match, {size}", lambda: from_scratch_minimal(gram, EPS, neuron)
    )
    got = run(f"nsm: one v-minimal match, {size}", lambda: nsm.minimal_match(gram, EPS, neuron), rounds=3)
    assert (got.x.tolist(), got.y.tolist()) == expected
    RATIOS.append(
        (
            f"one v-minimal match {size}: speed-up over from scratch",
            f"from scratch: one v-minimal match, {size}",
            f"nsm: one v-minimal match, {size}",
            ">= 100",
        )
    )


def test_all_simple_matches():
    gram = layers_gram(SIZES[0])
    size = f"{gram.n_x}+{gram.n_y}"
    s = timed(f"nsm: all simple matches, {size}", lambda: nsm.simple_matches(gram, EPS, progress=False))
    union_x = sorted(set().union(*[m.x.tolist() for m in s]))
    assert union_x == s.maximum_match.x.tolist()
    NOTES.append(
        f"all simple matches, {size}, eps={EPS}: {len(s)} matches from "
        f"{len(s.maximum_match.x) + len(s.maximum_match.y)} searches, "
        f"{TIMES[f'nsm: all simple matches, {size}']:.1f} s; kinds {s.kinds()}"
    )
