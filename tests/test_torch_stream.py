"""Streaming data through nsm.torch (issue 21, streams): an iterator keeps what a pass did not
read, anything iterable streams (a length is only a hint), and jackknife groups that the data
cannot fill are refused before the pass or leave the standard errors unavailable. Grams are
checked against activations extracted by hand, in float64."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
nn = torch.nn

import nsm  # noqa: E402
import nsm.torch  # noqa: E402


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    b = nn.Sequential(nn.Linear(4, 5), nn.Tanh())
    return a, b


def _batches(n: int = 5, size: int = 16) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(size, 4, generator=g) for _ in range(n)]


def _by_hand(a: nn.Module, b: nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    """The Gram of [A's site "1" | B's site "1"] over ``batches``, from the models run by hand."""
    with torch.no_grad():
        x = torch.cat([a(t) for t in batches]).double().numpy()
        y = torch.cat([b(t) for t in batches]).double().numpy()
    z = np.hstack([x, y])
    return z.T @ z


class _Stream(torch.utils.data.IterableDataset):
    """Samples one by one, with no length: a DataLoader over it has no len()."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.rows = torch.cat(batches)

    def __iter__(self):
        return iter(self.rows)


def _compare(a, b, data, **kw):
    return nsm.torch.compare(a, b, data, "1", progress=False, precision="float64", **kw)["1"].gram


def _compare_all(a, b, data, **kw):
    c = nsm.torch.compare_all(a, b, data, ["1"], progress=False, precision="float64", **kw)
    return c.pair("1", "1").gram


RUNS = pytest.mark.parametrize("run", [_compare, _compare_all], ids=["compare", "compare_all"])


@RUNS
def test_max_batches_reads_no_batch_beyond_it(run):
    a, b = _models()
    data = _batches(5)
    it = iter(data)
    gram = run(a, b, it, max_batches=2)
    rest = list(it)  # batches 2, 3, 4: none was fetched and dropped
    assert len(rest) == 3 and all(r is d for r, d in zip(rest, data[2:]))
    np.testing.assert_allclose(gram.matrix, _by_hand(a, b, data[:2]), rtol=1e-12, atol=1e-12)


@RUNS
def test_max_batches_stops_a_generator_without_drawing_more(run):
    a, b = _models()
    data = _batches(5)
    drawn = []

    def generate():
        for i, t in enumerate(data):
            drawn.append(i)
            yield t

    gen = generate()
    run(a, b, gen, max_batches=3)
    assert drawn == [0, 1, 2]
    assert next(gen) is data[3]


@RUNS
def test_a_dataloader_over_an_iterable_dataset_streams(run):
    a, b = _models()
    data = _batches(4)
    loader = torch.utils.data.DataLoader(_Stream(data), batch_size=16)
    with pytest.raises(TypeError):
        len(loader)
    gram = run(a, b, loader)
    assert gram.n_samples == 64
    np.testing.assert_allclose(gram.matrix, _by_hand(a, b, data), rtol=1e-12, atol=1e-12)


def test_an_unsized_stream_shows_a_bar_without_a_total(capsys):
    a, b = _models()
    loader = torch.utils.data.DataLoader(_Stream(_batches(3)), batch_size=16)
    nsm.torch.compare(a, b, loader, "1", progress=True)
    nsm.torch.compare_all(a, b, loader, ["1"], progress=True)
    err = capsys.readouterr().err
    # tqdm with total=None counts ("3batch") and shows no "k/total"
    assert "nsm compare: 3batch" in err and "nsm compare_all: 3batch" in err and "/3" not in err


class _Counted:
    """A sized iterable that records whether a pass began."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.read = batches, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for t in self.batches:
            self.read += 1
            yield t


def _run_groups(run, data, **kw):
    a, b = _models()
    if run is _compare:
        return nsm.torch.compare(a, b, data, "1", progress=False, **kw)
    return nsm.torch.compare_all(a, b, data, ["1"], progress=False, **kw)


@RUNS
def test_groups_beyond_the_known_length_are_refused_before_the_pass(run):
    data = _Counted(_batches(2))
    with pytest.raises(ValueError, match=r"groups=3 needs at least 3 batches .* 2 batches: pass groups=2"):
        _run_groups(run, data, groups=3)
    assert data.read == 0  # refused before the first batch


@RUNS
def test_groups_beyond_max_batches_are_refused_before_the_pass(run):
    data = iter(_batches(5))  # no length: max_batches alone says how many
    with pytest.raises(ValueError, match=r"groups=4 needs at least 4 batches .* max_batches=3 stops after 3"):
        _run_groups(run, data, groups=4, max_batches=3)
    assert len(list(data)) == 5


@RUNS
def test_one_batch_asks_for_no_groups(run):
    with pytest.raises(ValueError, match=r"data has 1 batch: pass groups=None"):
        _run_groups(run, _batches(1), groups=2)
