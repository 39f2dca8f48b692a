"""nsm.torch: capture, streaming comparison, layouts, modes, hooks, saving, distributed sums."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import nsm  # noqa: E402
import nsm.torch  # noqa: E402
from tests.torch_models import (  # noqa: E402
    distributed_worker,
    image_batches,
    small_cnn,
    token_batches,
    transformer_block,
)

# These tests check captured values against hand-extracted activations exactly, so the Grams
# take the float64 pass; the mixed pass has its own tests (tests/test_gram_precision.py).
compare = functools.partial(nsm.torch.compare, precision="float64")


def collect(model, data, name, layout):
    """Activations of one layer, collected by hand with a hook: (samples, neurons)."""
    out = []
    module = dict(model.named_modules())[name]
    handle = module.register_forward_hook(lambda m, i, o: out.append(o[0] if isinstance(o, tuple) else o))
    model.eval()
    with torch.no_grad():
        for batch in data:
            model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    handle.remove()
    acts = torch.cat(out).double()  # means in float64, as compare takes them
    if layout == "channels":
        acts = acts.movedim(1, -1).reshape(-1, acts.shape[1])
    elif layout == "tokens":
        acts = acts.reshape(-1, acts.shape[-1])
    elif layout == "mean":
        acts = acts.mean(dim=1)
    elif layout == "cls":
        acts = acts[:, 0]
    return acts.double().numpy()


def test_cnn_matches_max_match_on_hand_collected_activations():
    a, b, data = small_cnn(1), small_cnn(2), image_batches()
    c = compare(a, b, data, ["1", "3", "6"], progress=False)
    assert list(c) == ["1", "3", "6"]
    for name, layout in (("1", "channels"), ("3", "channels"), ("6", "units")):
        X, Y = collect(a, data, name, layout), collect(b, data, name, layout)
        lc = c[name]
        assert lc.n_samples == X.shape[0]
        assert (lc.n_x, lc.n_y) == (X.shape[1], Y.shape[1])
        np.testing.assert_allclose(lc.gram.matrix, nsm.Gram.from_arrays(X, Y).matrix, rtol=1e-9, atol=1e-9)
        for eps in (0.2, 0.5, 0.8, 0.9):
            direct = nsm.max_match(X, Y, eps)
            via = lc.max_match(eps)
            assert (via.x.tolist(), via.y.tolist()) == (direct.x.tolist(), direct.y.tolist())
    # conv layer "1": 8x8 images, padding 1 -> 64 positions per image, all of them samples
    assert c["1"].n_samples == 6 * 32 * 64


@pytest.mark.parametrize("tokens", ["samples", "mean", "cls"])
def test_transformer_block_tokens(tokens):
    a, b, data = transformer_block(1), transformer_block(2), token_batches()
    c = compare(a, b, data, ["linear1", "self_attn"], tokens=tokens, progress=False)
    layout = {"samples": "tokens", "mean": "mean", "cls": "cls"}[tokens]
    for name in ("linear1", "self_attn"):
        X, Y = collect(a, data, name, layout), collect(b, data, name, layout)
        np.testing.assert_allclose(
            c[name].gram.matrix, nsm.Gram.from_arrays(X, Y).matrix, rtol=1e-9, atol=1e-9
        )
    assert c["linear1"].n_samples == (5 * 32 * 10 if tokens == "samples" else 5 * 32)


def test_layer_selection_by_type_predicate_and_pairs():
    a, b, data = small_cnn(1), small_cnn(2), image_batches(3)
    by_type = compare(a, b, data, torch.nn.ReLU, progress=False)
    assert list(by_type) == ["1", "3", "6"]
    by_pred = compare(a, b, data, lambda name, m: isinstance(m, torch.nn.Conv2d), progress=False)
    assert list(by_pred) == ["0", "2"]
    pairs = compare(a, b, data, [("0", "1"), "6"], progress=False)
    assert list(pairs) == [("0", "1"), "6"]
    assert (pairs[("0", "1")].n_x, pairs[("0", "1")].n_y) == (6, 6)


def test_dataparallel_is_unwrapped():
    a, b, data = small_cnn(1), small_cnn(2), image_batches(2)
    plain = compare(a, b, data, "3", progress=False)
    wrapped = compare(torch.nn.DataParallel(a), b, data, "3", progress=False)
    np.testing.assert_allclose(wrapped["3"].gram.matrix, plain["3"].gram.matrix)


def test_hooks_removed_and_modes_restored():
    a, b, data = small_cnn(1), small_cnn(2), image_batches(2)
    a.train()
    b.eval()
    a[1].eval()  # a mixed-mode model keeps its exact modes
    modes = [m.training for m in a.modules()] + [m.training for m in b.modules()]
    compare(a, b, data, ["1", "3"], progress=False)
    assert [m.training for m in a.modules()] + [m.training for m in b.modules()] == modes
    assert all(not m._forward_hooks for m in list(a.modules()) + list(b.modules()))


def test_hooks_removed_after_an_exception():
    a, b = small_cnn(1), small_cnn(2)
    a.train()

    def batches():
        yield image_batches(1)[0]
        raise RuntimeError("the loader broke")

    with pytest.raises(RuntimeError, match="the loader broke"):
        compare(a, b, batches(), ["1", "3"], progress=False)
    assert all(not m._forward_hooks for m in list(a.modules()) + list(b.modules()))
    assert a.training and a[1].training


def test_outputs_dicts_and_model_outputs():
    class Output(dict):
        """Like a Hugging Face ModelOutput: a dict with attributes."""

        def __getattr__(self, key):
            return self[key]

    class Encoder(torch.nn.Module):
        def __init__(self, seed, as_object):
            super().__init__()
            torch.manual_seed(seed)
            self.proj = torch.nn.Linear(4, 6)
            self.as_object = as_object

        def forward(self, inputs=None, mask=None):
            h = torch.relu(self.proj(inputs))
            return Output(last_hidden_state=h) if self.as_object else {"last_hidden_state": h, "n": 1}

    class Wrapper(torch.nn.Module):
        def __init__(self, seed, as_object):
            super().__init__()
            self.encoder = Encoder(seed, as_object)

        def forward(self, inputs=None, mask=None):
            return self.encoder(inputs=inputs, mask=mask)

    g = torch.Generator().manual_seed(3)
    data = [{"inputs": torch.randn(4, 7, 4, generator=g), "mask": None} for _ in range(4)]
    c = compare(Wrapper(1, True), Wrapper(2, False), data, "encoder", progress=False)
    assert (c["encoder"].n_x, c["encoder"].n_samples) == (6, 4 * 4 * 7)


def test_baseline_breaks_the_pairing():
    a, data = small_cnn(1), image_batches(6)
    c = compare(a, small_cnn(1), data, "6", progress=False)  # identical networks
    lc = c["6"]
    assert lc.similarity(0.01) == pytest.approx(1.0 - (len(lc.dead_x) + len(lc.dead_y)) / 24)
    base = lc.baseline(0.01)
    assert base < lc.similarity(0.01)
    assert lc.baseline_gram.n_samples == 5 * 32  # batch i of A with batch i-1 of B
    single = compare(a, small_cnn(2), data[:1], "6", progress=False)
    assert math.isnan(single["6"].baseline(0.3))
    without = compare(a, small_cnn(1), data, "6", progress=False, baseline=False)
    assert np.isnan(without["6"].baseline()).all() and without["6"].baseline_gram is None
    np.testing.assert_array_equal(without["6"].gram.matrix, lc.gram.matrix)


def test_save_load_round_trip(tmp_path):
    c = compare(small_cnn(1), small_cnn(2), image_batches(3), [("0", "1"), "6"], progress=False)
    path = tmp_path / "report.json"
    c.save(path)
    d = json.loads(path.read_text())
    assert d["format"] == "nsm-comparison" and d["eps"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    back = nsm.torch.Comparison.load(path)
    assert list(back) == list(c)
    for key in c:
        np.testing.assert_array_equal(back[key].thresholds.x, c[key].thresholds.x)
        np.testing.assert_array_equal(back[key].similarity(), c[key].similarity())
        np.testing.assert_array_equal(back[key].baseline(), c[key].baseline())
    assert "0 / 1" in repr(back) and "ε=0.3" in back.table()
    with pytest.raises(ValueError, match="not an nsm comparison"):
        nsm.torch.Comparison.from_dict({"layers": []})


def test_errors_name_the_layer():
    a, b, data = small_cnn(1), small_cnn(2), image_batches(2)
    with pytest.raises(ValueError, match="layer 'nope' not found in model_a; its modules are: 0, 1"):
        compare(a, b, data, "nope", progress=False)
    with pytest.raises(ValueError, match=r"site \('1', '6'\): model_a gives 2048 samples per batch"):
        compare(a, b, data, [("1", "6")], progress=False)
    with pytest.raises(ValueError, match="tokens must be one of"):
        compare(a, b, data, "1", tokens="first", progress=False)
    with pytest.raises(ValueError, match="selects 3 sites of model_a .* but 2 of model_b"):
        compare(a, torch.nn.Sequential(torch.nn.ReLU(), torch.nn.ReLU()), data, torch.nn.ReLU, progress=False)
    with pytest.raises(ValueError, match="data gave no batch"):
        compare(a, b, [], "1", progress=False)
    with pytest.raises(ValueError, match="max_batches must be a positive int"):
        compare(a, b, data, "1", max_batches=0, progress=False)

    class Scalar(torch.nn.Module):
        def forward(self, x):
            return x.sum(dim=(1, 2, 3))

    with pytest.raises(ValueError, match=r"site '0' of model_a gives outputs of shape \(32,\); nsm needs"):
        compare(torch.nn.Sequential(Scalar()), torch.nn.Sequential(Scalar()), data, "0", progress=False)


def test_max_batches_and_progress(capsys):
    a, b, data = small_cnn(1), small_cnn(2), image_batches(5)
    c = compare(a, b, data, "6", max_batches=2, progress=True)
    assert c["6"].n_samples == 64
    assert "nsm compare" in capsys.readouterr().err


def test_two_processes_sum_their_shards(tmp_path):
    torch.multiprocessing.spawn(
        distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True
    )
    single = compare(small_cnn(1), small_cnn(2), image_batches(8), ["1", "3"], progress=False)
    g0, g1 = np.load(tmp_path / "gram0.npy"), np.load(tmp_path / "gram1.npy")
    np.testing.assert_array_equal(g0, g1)  # every rank gets the same result
    np.testing.assert_allclose(g0, single["3"].gram.matrix, rtol=1e-10)
    r0 = nsm.torch.Comparison.load(tmp_path / "result0.json")
    assert r0["3"].n_samples == single["3"].n_samples
    np.testing.assert_allclose(r0["3"].thresholds.x, single["3"].thresholds.x, atol=1e-9)


def test_baseline_gram_is_batch_i_of_a_against_batch_i_minus_1_of_b():
    g = torch.Generator().manual_seed(5)
    sizes = [40, 40, 40, 25]  # an unequal last batch: its partner is cut to 25 rows
    data = [torch.randn(s, 1, 8, 8, generator=g) for s in sizes]
    a, b = small_cnn(1), small_cnn(2)
    c = compare(a, b, data, ["3", "6"], progress=False)
    for name, layout in (("3", "channels"), ("6", "units")):
        per_a = [collect(a, [x], name, layout) for x in data]
        per_b = [collect(b, [x], name, layout) for x in data]
        xs, ys = [], []
        for i in range(1, len(data)):
            m = min(len(per_a[i]), len(per_b[i - 1]))
            xs.append(per_a[i][:m])
            ys.append(per_b[i - 1][:m])
        expected = nsm.Gram.from_arrays(np.vstack(xs), np.vstack(ys))
        got = c[name].baseline_gram
        assert got.n_samples == expected.n_samples
        np.testing.assert_allclose(got.matrix, expected.matrix, rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(got.column_sums, expected.column_sums, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("precision, rtol", [("float64", 1e-10), ("mixed", 1e-6)])
def test_the_gpu_arithmetic_path_gives_the_same_grams(monkeypatch, precision, rtol):
    # On a GPU the Grams are torch matmuls on the device; run that path on the CPU. In float64
    # both paths are exact to rounding; mixed sums float32 products in other orders.
    g = torch.Generator().manual_seed(6)
    data = [torch.randn(s, 1, 8, 8, generator=g) for s in (30, 30, 30, 17)]
    a, b = small_cnn(1), small_cnn(2)
    core = compare(a, b, data, ["3", "6"], progress=False, precision=precision)
    monkeypatch.setattr(nsm.torch.accumulate, "CORE_ON_CPU", False)
    plain = compare(a, b, data, ["3", "6"], progress=False, precision=precision)
    exact = compare(a, b, data, ["3", "6"], progress=False, precision="float64")
    for name in ("3", "6"):
        scale = np.abs(exact[name].gram.matrix).max()
        np.testing.assert_allclose(
            plain[name].gram.matrix, core[name].gram.matrix, rtol=rtol, atol=rtol * scale
        )
        np.testing.assert_allclose(
            plain[name].baseline_gram.matrix, core[name].baseline_gram.matrix, rtol=rtol, atol=rtol * scale
        )
        np.testing.assert_allclose(
            plain[name].gram.matrix, exact[name].gram.matrix, rtol=rtol, atol=rtol * scale
        )
        np.testing.assert_allclose(plain[name].gram.column_sums, core[name].gram.column_sums, rtol=1e-10)
        # The Grams say which pass made them (the measures' rank cutoff reads it); the GPU path
        # used to label a mixed Gram float64.
        assert plain[name].gram.precision == core[name].gram.precision == precision
        assert plain[name].baseline_gram.precision == core[name].baseline_gram.precision == precision
