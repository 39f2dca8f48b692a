"""nsm.torch on the patterns of real models: in-place operations, reused modules, branches,
layouts (Conv1d, channels-last), padded token batches, one batch, torch.compile, an empty rank.
Every Gram is checked against activations extracted by hand, running the submodules step by step."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
F = torch.nn.functional

import nsm  # noqa: E402
import nsm.torch  # noqa: E402
from tests.torch_models import (  # noqa: E402
    TokenEncoder,
    conv1d_net,
    convnext,
    padded_batches,
    resnet18,
    small_cnn,
)

# These tests check captured values against hand-extracted activations exactly, so the Grams
# take the float64 pass; the mixed pass has its own tests (tests/test_gram_precision.py).
compare = functools.partial(nsm.torch.compare, precision="float64")


def channels(t):
    """(N, C, *positions) -> (samples, C) rows in (input, position) order."""
    return t.movedim(1, -1).reshape(-1, t.shape[1]).double().numpy()


def last_axis(t):
    """(N, *positions, C) -> (samples, C) rows."""
    return t.reshape(-1, t.shape[-1]).double().numpy()


def assert_gram(lc, X, Y, rtol=1e-9):
    expected = nsm.Gram.from_arrays(np.vstack(X), np.vstack(Y))
    assert lc.n_samples == expected.n_samples
    assert (lc.n_x, lc.n_y) == (expected.n_x, expected.n_y)
    scale = np.abs(expected.matrix).max()
    np.testing.assert_allclose(lc.gram.matrix, expected.matrix, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(
        lc.gram.column_sums, expected.column_sums, rtol=rtol, atol=rtol * np.abs(expected.column_sums).max()
    )


def resnet_steps(model, x):
    """The outputs of ResNet-18's first two blocks, computed without any in-place operation."""
    out = {}
    with torch.no_grad():
        h = model.maxpool(F.relu(model.bn1(model.conv1(x))))
        for name, block in (
            ("layer1.0", model.layer1[0]),
            ("layer1.1", model.layer1[1]),
            ("layer2.0", model.layer2[0]),
        ):
            o1 = block.bn1(block.conv1(h))
            r1 = F.relu(o1)
            o2 = block.bn2(block.conv2(r1))
            identity = h if block.downsample is None else block.downsample(h)
            r2 = F.relu(o2 + identity)
            out.update({f"{name}.bn1": o1, f"{name}.relu#0": r1, f"{name}.bn2": o2, f"{name}.relu#1": r2})
            h = r2
    return out


def images(n_batches=3, batch=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, size, size, generator=g) for _ in range(n_batches)]


def test_resnet_in_place_and_reused_relu_give_the_values_each_module_returned():
    a, b, data = resnet18(1), resnet18(2), images()
    sites = [
        "layer1.0.bn1",
        "layer1.0.bn2",
        "layer1.0.relu#0",
        "layer1.0.relu#1",
        "layer2.0.bn2",
        "layer2.0.relu#1",
    ]
    c = compare(a, b, data, sites, progress=False)
    assert list(c) == sites
    for site in sites:
        X = [channels(resnet_steps(a, x)[site]) for x in data]
        Y = [channels(resnet_steps(b, x)[site]) for x in data]
        assert_gram(c[site], X, Y)
        assert c[site].layout == ("nchw", "nchw")
    # bn1's output has negative values; the in-place ReLU that follows must not have zeroed them
    assert c["layer1.0.bn1"].gram.column_sums.min() < 0


def test_a_reused_module_must_be_named_by_site():
    a, b, data = resnet18(1), resnet18(2), images(1)
    with pytest.raises(
        ValueError,
        match=r"'layer1.0.relu' of model_a runs 2 times per forward pass: "
        r"name one of its sites, 'layer1.0.relu#0', 'layer1.0.relu#1'",
    ):
        compare(a, b, data, "layer1.0.relu", progress=False)
    with pytest.raises(ValueError, match=r"site layer1.0.relu#2 of model_a does not exist"):
        compare(a, b, data, "layer1.0.relu#2", progress=False)


@pytest.mark.filterwarnings("ignore::nsm.FewSamplesWarning")  # layer4 has few positions
def test_selecting_by_type_gives_every_site_in_call_order():
    a, b, data = resnet18(1), resnet18(2), images(2)
    c = compare(a, b, data, torch.nn.ReLU, progress=False, baseline=False)
    expected = ["relu"] + [f"layer{i}.{j}.relu#{k}" for i in range(1, 5) for j in range(2) for k in range(2)]
    assert list(c) == expected
    steps = [resnet_steps(a, x) for x in data], [resnet_steps(b, x) for x in data]
    for site in ("layer1.1.relu#0", "layer2.0.relu#1"):
        assert_gram(c[site], [channels(s[site]) for s in steps[0]], [channels(s[site]) for s in steps[1]])
    assert "layer1.1.relu#0" in c.table() and "nchw" in c.table()


class Branchy(torch.nn.Module):
    """A branch that runs only on batches whose first value is positive."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = torch.nn.Linear(4, 5)
        self.branch = torch.nn.Linear(5, 5)
        self.never = torch.nn.Linear(5, 5)

    def forward(self, x):
        h = torch.relu(self.trunk(x))
        if x[0, 0] > 0:
            h = self.branch(h)
        return h


def test_a_site_that_does_not_run_in_every_batch_is_an_error_naming_it():
    data = [torch.randn(16, 4).abs(), -torch.randn(16, 4).abs(), torch.randn(16, 4).abs()]
    with pytest.raises(
        ValueError,
        match=r"module 'branch' of model_a ran 0 times in batch 1 but 1 in "
        "the first batch",
    ):
        compare(Branchy(1), Branchy(2), data, "branch", progress=False)
    with pytest.raises(ValueError, match=r"site 'never' did not run in model_a in the first batch"):
        compare(Branchy(1), Branchy(2), data, "never", progress=False)

    # a site that runs in model A but not in model B
    class Never(Branchy):
        def forward(self, x):
            return torch.relu(self.trunk(x))

    with pytest.raises(ValueError, match=r"site 'branch' did not run in model_b"):
        compare(Branchy(1), Never(2), data[:1], "branch", progress=False)
    # the trunk runs every time: its sample count is exactly what was fed
    c = compare(Branchy(1), Branchy(2), data, "trunk", progress=False)
    assert c["trunk"].n_samples == 48


def test_conv1d_sites_are_channels_first_whatever_follows():
    a, b = conv1d_net(1), conv1d_net(2)
    g = torch.Generator().manual_seed(4)
    data = [torch.randn(10, 4, 12, generator=g) for _ in range(3)]
    c = compare(a, b, data, ["1", "3", "4", "7"], progress=False)
    assert [c[s].layout[0] for s in ("1", "3", "4", "7")] == ["ncl", "ncl", "ncl", "nc"]
    assert (c["1"].n_x, c["3"].n_x, c["4"].n_x) == (6, 5, 5)
    for site, upto in (("1", 2), ("3", 4), ("4", 5), ("7", 8)):

        def hand(model, x, upto=upto):
            with torch.no_grad():
                return model[:upto].eval()(x)

        X = [channels(hand(a, x)) for x in data]
        Y = [channels(hand(b, x)) for x in data]
        assert_gram(c[site], X, Y)


def test_channels_last_linear_and_gelu_read_the_last_axis():
    a, b = convnext(1), convnext(2)
    g = torch.Generator().manual_seed(5)
    data = [torch.randn(4, 3, 16, 16, generator=g) for _ in range(3)]
    sites = ["1.dwconv", "1.norm", "1.pwconv1", "1.act", "1.drop_path", "1"]
    c = compare(a, b, data, sites, progress=False)
    assert [c[s].layout[0] for s in sites] == ["nchw", "nhwc", "nhwc", "nhwc", "nchw", "nchw"]
    assert c["1.act"].n_x == 24

    def hand(model, x):
        blk = model[1]
        with torch.no_grad():
            h = model[0](x)
            d = blk.dwconv(h)
            n = blk.norm(d.permute(0, 2, 3, 1))
            p1 = blk.pwconv1(n)
            act = F.gelu(p1)
            back = blk.pwconv2(act).permute(0, 3, 1, 2)
            return {
                "1.dwconv": channels(d),
                "1.norm": last_axis(n),
                "1.pwconv1": last_axis(p1),
                "1.act": last_axis(act),
                "1.drop_path": channels(back),
                "1": channels(h + back),
            }

    ha, hb = [hand(a, x) for x in data], [hand(b, x) for x in data]
    for s in sites:
        assert_gram(c[s], [h[s] for h in ha], [h[s] for h in hb])


def test_an_undecidable_layout_asks_for_layout_and_layout_overrides():
    class Mix(torch.nn.Module):
        def forward(self, x):
            return x * 2  # a new tensor of a shape no module produced

    def net(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(Mix(), torch.nn.Conv2d(3, 4, 1))

    data = [torch.randn(2, 3, 5, 7)]
    with pytest.raises(
        ValueError,
        match=r"cannot tell which axis holds the neurons of site '0' of "
        r"model_a \(outputs of shape \(2, 3, 5, 7\)\): pass layout=",
    ):
        compare(net(1), net(2), data, ["0"], progress=False)
    c = compare(net(1), net(2), data, ["0", "1"], layout={"0": "nhwc"}, progress=False, baseline=False)
    assert c["0"].layout == ("nhwc", "nhwc") and c["0"].n_x == 7 and c["1"].n_x == 4
    assert_gram(c["0"], [last_axis(2 * data[0])], [last_axis(2 * data[0])])
    with pytest.raises(ValueError, match=r"layout names \['nope'\], which no selected site is"):
        compare(net(1), net(2), data, ["1"], layout={"nope": "nc"}, progress=False)
    with pytest.raises(ValueError, match="layout must be one of"):
        compare(net(1), net(2), data, ["1"], layout="nwhc", progress=False)
    with pytest.raises(ValueError, match=r"layout 'nc' for site '1' of model_a does not fit"):
        compare(net(1), net(2), data, ["1"], layout="nc", progress=False)


def encoder_hand(model, batch):
    """The encoder's output and its real-token mask, with the padding mask applied by hand."""
    with torch.no_grad():
        h = model.encoder(model.embed(batch["input_ids"]), src_key_padding_mask=batch["attention_mask"] == 0)
    return h, batch["attention_mask"].bool()


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("tokens", ["samples", "mean", "cls", "last"])
def test_padded_tokens_are_not_samples(side, tokens):
    a, b, data = TokenEncoder(1), TokenEncoder(2), padded_batches(n_batches=10, side=side)
    c = compare(a, b, data, "encoder", tokens=tokens, progress=False)
    X, Y = [], []
    for batch in data:
        for model, out in ((a, X), (b, Y)):
            h, real = encoder_hand(model, batch)
            if tokens == "samples":
                rows = torch.cat([h[i, real[i]] for i in range(len(h))])
            elif tokens == "mean":
                rows = torch.stack([h[i, real[i]].mean(dim=0) for i in range(len(h))])
            else:
                where = torch.nonzero(real)
                pick = [int(where[where[:, 0] == i, 1][0 if tokens == "cls" else -1]) for i in range(len(h))]
                rows = torch.stack([h[i, p] for i, p in enumerate(pick)])
            out.append(rows.double().numpy())
    # torch's fused encoder path rounds float32 differently from the step-by-step call
    assert_gram(c["encoder"], X, Y, rtol=1e-6)
    assert c["encoder"].layout == ("nlc", "nlc") and c["encoder"].tokens == tokens
    assert f"nlc {tokens}" in c.table()


def test_mask_callable_overrides_and_tokens_per_site():
    a, b, data = TokenEncoder(1), TokenEncoder(2), padded_batches(n_batches=6, side="left")
    c = compare(
        a,
        b,
        data,
        ["encoder", "head"],
        tokens={"head": "last"},
        mask=lambda batch: torch.ones_like(batch["input_ids"], dtype=torch.bool),
        progress=False,
    )
    assert c["encoder"].n_samples == 6 * 8 * 9  # every position, padding included, as asked
    assert c["head"].n_samples == 6 * 8 and c["head"].tokens == "last"
    with pytest.raises(ValueError, match="tokens must be one of"):
        compare(a, b, data, "head", tokens="first", progress=False)


@pytest.mark.parametrize("seed", range(6))
def test_one_batch_gives_a_nan_baseline_not_an_error(seed):
    torch.manual_seed(seed)
    a = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU())
    x = torch.randn(200, 8)
    c = compare(a, b, x, "1", eps=0.3, progress=False)  # a bare tensor: one batch
    assert c["1"].n_samples == 200
    assert math.isnan(c["1"].baseline(0.3)) and np.isnan(c["1"].baseline([0.1, 0.9])).all()
    assert c.eps == (0.3,)


def test_a_neuron_live_only_in_the_first_batch_is_dead_in_the_baseline():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU())
    with torch.no_grad():
        for m in (a, b):
            m[0].weight[0] = torch.tensor([1.0, 0.0, 0.0])
            m[0].bias[0] = -100.0  # neuron 0 fires only where the input's first value is huge
    first = torch.randn(50, 3)
    first[:, 0] = 1000.0
    data = [first, torch.randn(50, 3), torch.randn(50, 3)]
    c = compare(a, b, data, "1", progress=False)
    assert 0 not in c["1"].dead_x.tolist()
    assert 0 in c["1"].baseline_thresholds.dead_x.tolist()
    assert c["1"].baseline_gram.matrix[0, 0] == 0.0


def test_few_samples_warning_names_the_site_the_baseline_and_the_callers_line():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(8, 60), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(8, 60), torch.nn.ReLU())
    data = [torch.randn(50, 8) for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = compare(a, b, data, "1", progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, nsm.FewSamplesWarning)]
    assert any(m.startswith("site '1': ") for m in messages)
    assert any(m.startswith("site '1', baseline: ") for m in messages)
    assert all(w.filename == __file__ for w in caught)
    assert c["1"].notes == ("few samples", "few samples (baseline)")
    assert "few samples" in c.table()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own imports
def test_torch_compile_wrappers_are_unwrapped():
    a, b, data = (
        small_cnn(1),
        small_cnn(2),
        [x for x, _ in __import__("tests.torch_models", fromlist=["x"]).image_batches(2)],
    )
    plain = compare(a, b, data, ["1", "3"], progress=False)
    compiled = compare(torch.compile(a), torch.compile(b), data, ["1", "3"], progress=False)
    assert list(compiled) == ["1", "3"]
    np.testing.assert_array_equal(compiled["3"].gram.matrix, plain["3"].gram.matrix)


def test_saved_grams_let_simple_matches_work_after_load(tmp_path):
    a, b, data = small_cnn(1), small_cnn(2), __import__("tests.torch_models", fromlist=["x"]).image_batches(3)
    c = compare(a, b, data, ["3", "6"], progress=False)
    c.save(tmp_path / "c.json")
    bare = nsm.torch.Comparison.load(tmp_path / "c.json")
    with pytest.raises(ValueError, match="save it with save\\(path, grams=True\\)"):
        bare["6"].simple_matches(0.5)
    c.save(tmp_path / "g.json", grams=True)
    back = nsm.torch.Comparison.load(tmp_path / "g.json")
    np.testing.assert_array_equal(back["3"].gram.matrix, c["3"].gram.matrix)
    np.testing.assert_array_equal(back["3"].baseline_gram.matrix, c["3"].baseline_gram.matrix)
    assert back["6"].layout == ("nc", "nc")
    expected = nsm.simple_matches(c["6"].gram, 0.5)
    assert len(back["6"].simple_matches(0.5)) == len(expected)


def test_a_rank_with_no_batch_takes_part_in_the_sums(tmp_path):
    from tests.torch_models import distributed_worker, image_batches

    torch.multiprocessing.spawn(
        distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path), "empty"), nprocs=2, join=True
    )
    single = compare(small_cnn(1), small_cnn(2), image_batches(8), ["1", "3"], progress=False)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"gram{rank}.npy"), single["3"].gram.matrix, rtol=1e-10)
        back = nsm.torch.Comparison.load(tmp_path / f"result{rank}.json")
        assert back["3"].n_samples == single["3"].n_samples
        np.testing.assert_allclose(back["3"].baseline(), single["3"].baseline())


def test_hugging_face_bert_with_padding():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
    )
    torch.manual_seed(1)
    a = transformers.BertModel(config).eval()
    torch.manual_seed(2)
    b = transformers.BertModel(config).eval()
    data = padded_batches(n_batches=12, batch=8, length=9, side="right")
    sites = ["encoder.layer.0.output", "encoder.layer.1.intermediate.intermediate_act_fn", "pooler"]
    c = compare(a, b, data, sites, tokens={"encoder.layer.0.output": "mean"}, progress=False)
    assert [c[s].layout[0] for s in sites] == ["nlc", "nlc", "nc"]
    assert c["encoder.layer.1.intermediate.intermediate_act_fn"].n_x == 48
    X, Y = {s: [] for s in sites}, {s: [] for s in sites}
    for batch in data:
        real = batch["attention_mask"].bool()
        for model, out in ((a, X), (b, Y)):
            seen = []  # the intermediate activation, copied by a plain hook of our own
            act = model.encoder.layer[1].intermediate.intermediate_act_fn
            handle = act.register_forward_hook(lambda m, i, o, seen=seen: seen.append(o.clone()))
            with torch.no_grad():
                o = model(**batch, output_hidden_states=True)
            handle.remove()
            h0, inter = o.hidden_states[1], seen[0]  # the first layer's output
            out[sites[0]].append(
                torch.stack([h0[i, real[i]].mean(dim=0) for i in range(len(h0))]).double().numpy()
            )
            out[sites[1]].append(inter[real].double().numpy())
            out[sites[2]].append(o.pooler_output.double().numpy())
    for s in sites:
        assert_gram(c[s], X[s], Y[s], rtol=1e-6)


def test_a_model_compared_with_itself_or_sharing_modules():
    a, data = small_cnn(1), __import__("tests.torch_models", fromlist=["x"]).image_batches(3)
    c = compare(a, a, data, ["3", "6"], progress=False)
    assert c["6"].n_samples == 96
    live = 24 - len(c["6"].dead_x) - len(c["6"].dead_y)
    assert c["6"].similarity(0.0) == pytest.approx(live / 24)
    b = torch.nn.Sequential(a[0], a[1], torch.nn.Conv2d(6, 8, 3), torch.nn.ReLU())  # shares a's first layers
    c = compare(a, b, data, "1", progress=False)
    assert c["1"].n_samples == 3 * 32 * 64


def test_an_error_between_batches_leaves_grad_mode_and_hooks_as_they_were():
    a, b, data = small_cnn(1), small_cnn(2), __import__("tests.torch_models", fromlist=["x"]).image_batches(2)
    assert torch.is_grad_enabled()
    with pytest.raises(ValueError, match="samples per batch") as caught:
        compare(a, b, data, [("1", "6")], progress=False)
    assert caught.value is not None  # the traceback (and compare's frame) is still alive here
    assert torch.is_grad_enabled()
    assert all(not m._forward_hooks for m in list(a.modules()) + list(b.modules()))
