"""nsm.torch.compare_all: every site against every site, Grams checked against activations
pooled by hand."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
F = torch.nn.functional

import nsm  # noqa: E402
import nsm.torch  # noqa: E402

# These tests check captured values against hand-extracted activations exactly, so the Grams
# take the float64 pass; the mixed pass has its own tests (tests/test_gram_precision.py).
compare_all = functools.partial(nsm.torch.compare_all, precision="float64")


def net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 5, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(5 * 16, 6),
        torch.nn.ReLU(),
    ).eval()


def batches(n=4, size=8):
    g = torch.Generator().manual_seed(7)
    return [torch.randn(32, 3, size, size, generator=g) for _ in range(n)]


def outputs(model, data):
    """Every ReLU's output for every batch, by running the layers one at a time."""
    out = {"1": [], "4": [], "7": []}
    with torch.no_grad():
        for x in data:
            h = x
            for i, layer in enumerate(model):
                h = layer(h)
                if str(i) in out:
                    out[str(i)].append(h)
    return out


def rows(t, grid):
    """(N, C, H, W) or (N, C) -> samples on ``grid`` (None: as it is; (): one per input)."""
    if t.ndim == 2:
        return t.double().numpy()
    if grid == ():
        return t.mean(dim=(2, 3)).double().numpy()
    if tuple(t.shape[2:]) != grid:
        t = F.avg_pool2d(t, t.shape[2] // grid[0])
    return t.movedim(1, -1).reshape(-1, t.shape[1]).double().numpy()


def check_pair(cross, a, b, X, Y):
    got = cross.pair(a, b).gram
    expected = nsm.Gram.from_arrays(np.vstack(X), np.vstack(Y))
    assert got.n_samples == expected.n_samples
    np.testing.assert_allclose(
        got.matrix, expected.matrix, rtol=1e-9, atol=1e-9 * np.abs(expected.matrix).max()
    )


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_every_pair_against_pooled_activations(samples):
    a, b, data = net(1), net(2), batches()
    cross = compare_all(a, b, data, torch.nn.ReLU, samples=samples, progress=False)
    assert list(cross.sites_a) == ["1", "4", "7"] and list(cross.sites_b) == ["1", "4", "7"]
    oa, ob = outputs(a, data), outputs(b, data)
    grids = {"1": (8, 8), "4": (4, 4), "7": ()}
    for sa in grids:
        for sb in grids:
            if samples == "inputs":
                grid = ()
            elif () in (grids[sa], grids[sb]):
                grid = ()
            else:
                grid = min(grids[sa], grids[sb])
            check_pair(cross, sa, sb, [rows(t, grid) for t in oa[sa]], [rows(t, grid) for t in ob[sb]])
    cka = cross.matrix("linear_cka")
    assert cka.shape == (3, 3) and np.isfinite(cka).all()
    direct = nsm.measures.linear_cka(
        np.vstack([rows(t, ()) for t in oa["1"]]), np.vstack([rows(t, ()) for t in ob["7"]])
    )
    assert cka[0, 2] == pytest.approx(direct, rel=1e-9)


def test_pairs_that_cannot_share_samples_are_reported():
    class Tokens(torch.nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.conv = torch.nn.Conv2d(3, 4, 3)  # 8x8 -> 6x6
            self.proj = torch.nn.Linear(6, 5)  # on (N, 4 * 6, 6): a token site

        def forward(self, x):
            c = self.conv(x)
            return self.proj(c.reshape(x.shape[0], -1, 6))

    data = batches(2)
    cross = compare_all(Tokens(1), Tokens(2), data, ["conv", "proj"], progress=False)
    assert cross.pair("conv", "conv").gram is not None
    assert "token" in cross.reasons[("conv", "proj")]
    assert np.isnan(cross.matrix("linear_cka")[0, 1])


def test_memory_is_checked_before_streaming():
    a, b, data = net(1), net(2), batches(2)
    # grids (8, 8): the first ReLU of each (4 + 4); (4, 4): the first two (18); (): all (30);
    # each Gram counted twice (the accumulator and the symmetric matrix read from it)
    total = 2 * 8 * (8**2 + 18**2 + 30**2)
    with pytest.raises(
        ValueError,
        match=rf"would take {total} bytes, over max_bytes = 1000 bytes; the widest sites are "
        r"'7' of model_a \(6\)",
    ):
        compare_all(a, b, data, torch.nn.ReLU, max_bytes=1000, progress=False)
    with pytest.raises(ValueError, match="samples must be one of"):
        compare_all(a, b, data, torch.nn.ReLU, samples="mean", progress=False)
