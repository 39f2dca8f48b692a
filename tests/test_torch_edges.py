"""nsm.torch on the models people build (issue 22): models that write into their input, sites
that see part of the batch, low-precision reductions, buffers reused across batches,
sequence-first layouts, encoder-decoder masks, writes through ``.data``. Every Gram is checked
against activations extracted by hand (forward hooks or the submodules run step by step) and a
float64 NumPy reference."""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
nn = torch.nn

import nsm  # noqa: E402
import nsm.torch  # noqa: E402
from tests.torch_models import HalvesInput, RoutedExperts  # noqa: E402

compare = functools.partial(nsm.torch.compare, precision="float64", progress=False)
compare_all = functools.partial(nsm.torch.compare_all, precision="float64", progress=False)


def reference(X, Y):
    """The float64 Gram of [X Y] and its column sums, by NumPy alone."""
    Z = np.hstack([np.vstack(X), np.vstack(Y)]).astype(np.float64)
    return Z.T @ Z, Z.sum(axis=0), Z.shape[0]


def assert_gram(lc, X, Y, rtol=1e-10):
    matrix, sums, n = reference(X, Y)
    assert lc.n_samples == n
    np.testing.assert_allclose(lc.gram.matrix, matrix, rtol=rtol, atol=rtol * np.abs(matrix).max())
    np.testing.assert_allclose(lc.gram.column_sums, sums, rtol=rtol, atol=rtol * np.abs(sums).max())


def batches(n_batches, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for _ in range(n_batches)]


# -- item 1: a model that writes into its input ------------------------------------------------


def test_a_model_that_writes_into_its_input_gets_its_own_copy_of_each_batch():
    a, b = HalvesInput(1), nn.Sequential(nn.Linear(6, 10), nn.ReLU())
    data = batches(3, (20, 6))
    kept = [x.clone() for x in data]
    c = compare(a, b, data, [("lin", "0")])
    X = [a.lin(x / 2).detach().numpy() for x in kept]  # before the in-place ReLU
    Y = [b[0](x).detach().numpy() for x in kept]
    assert_gram(c[("lin", "0")], X, Y)
    for x, k in zip(data, kept):  # the caller's batches are unchanged
        torch.testing.assert_close(x, k, rtol=0, atol=0)
    # the same model on both sides matches itself: each forward saw the batch as it came
    same = compare(HalvesInput(1), HalvesInput(1), data, "lin")
    X = [a.lin(x / 2).detach().numpy() for x in kept]
    assert_gram(same["lin"], X, X)


def test_a_model_that_writes_into_its_input_only_later_is_an_error_naming_it():
    class Later(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):
            if x[0, 0] > 0:
                x /= 2
            return self.lin(x)

    data = batches(3, (10, 6))
    data[0][0, 0], data[1][0, 0] = -1.0, 1.0
    with pytest.raises(ValueError, match=r"model_a wrote into its input in batch 1 .* not in the first"):
        compare(Later(), nn.Sequential(nn.Linear(6, 4)), data, [("lin", "0")])


# -- item 3: a site that sees part of the batch ----------------------------------------------


def test_a_routed_expert_that_sees_part_of_the_batch_is_refused_naming_site_model_batch_sizes():
    data = batches(2, (16, 8))
    with pytest.raises(
        ValueError,
        match=r"site 'experts.0' of model_a gives outputs of shape \(4, 8\) in batch 0: 4 along its "
        r"batch axis \(layout 'nc'\) but the batch has 16 inputs",
    ):
        compare(RoutedExperts(1), RoutedExperts(2), data, "experts.0")
    with pytest.raises(ValueError, match=r"site 'experts.1' of model_a .* the batch has 16 inputs"):
        compare_all(RoutedExperts(1), RoutedExperts(2), data, ["router", "experts.1"])
    # the router sees every input: it is compared, against a hand-extracted reference
    a, b = RoutedExperts(1), RoutedExperts(2)
    c = compare(a, b, data, "router")
    X, Y = ([m.router(x).detach().numpy() for x in data] for m in (a, b))
    assert_gram(c["router"], X, Y)
