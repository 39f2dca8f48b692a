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


# -- item 4: means and pools in float64, not in the model's dtype ------------------------------


def hooked(model, names, data, feed=lambda m, x: m(x)):
    """Each named module's output for each batch, copied by a forward hook of our own."""
    seen = {n: [] for n in names}
    modules = dict(model.named_modules())

    def keep(name):
        return lambda m, i, o: seen[name].append((o[0] if isinstance(o, tuple) else o).clone())

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    with torch.no_grad():
        for x in data:
            feed(model.eval(), x)
    for h in handles:
        h.remove()
    return seen


def bf16_cnn(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU())
    return net.to(torch.bfloat16).eval()


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_bfloat16_spatial_means_and_pools_are_summed_in_float64(samples):
    a, b = bf16_cnn(1), bf16_cnn(2)
    data = [x.to(torch.bfloat16) for x in batches(3, (12, 3, 8, 8))]
    b[2].stride = (2, 2)  # model B's second conv is on a 4x4 grid: pool A's 8x8 onto it
    cross = compare_all(a, b, data, ["1", "3"], samples=samples)
    ha, hb = hooked(a, ["1", "3"], data), hooked(b, ["1", "3"], data)

    def rows(t, grid):  # float64 first, then the mean: the reference never rounds
        t = t.double()
        if grid == ():
            return t.mean(dim=(2, 3)).numpy()
        k = t.shape[2] // grid[0]
        t = t.reshape(t.shape[0], t.shape[1], grid[0], k, grid[1], k).mean(dim=(3, 5))
        return t.movedim(1, -1).reshape(-1, t.shape[1]).numpy()

    grid = () if samples == "inputs" else (4, 4)
    got = cross.pair("1", "3").gram
    matrix, sums, n = reference([rows(t, grid) for t in ha["1"]], [rows(t, grid) for t in hb["3"]])
    assert got.n_samples == n
    np.testing.assert_allclose(got.matrix, matrix, rtol=1e-12, atol=1e-12 * np.abs(matrix).max())


class Tokens(nn.Module):
    """Embedded tokens through a Linear and a GELU, keyword inputs with an attention mask."""

    def __init__(self, seed, d=16):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(50, d)
        self.lin = nn.Linear(d, d)
        self.act = nn.GELU()

    def forward(self, input_ids, attention_mask=None):
        return self.act(self.lin(self.embed(input_ids)))


def test_bfloat16_token_means_are_summed_in_float64():
    from tests.torch_models import padded_batches

    a, b = Tokens(1).to(torch.bfloat16), Tokens(2).to(torch.bfloat16)
    data = padded_batches(n_batches=10, side="left")
    c = compare(a, b, data, "act", tokens="mean")

    def means(model):
        outs = hooked(model, ["act"], data, lambda m, x: m(**x))["act"]
        real = [x["attention_mask"].bool() for x in data]
        return [
            torch.stack([h[i, r[i]].double().mean(dim=0) for i in range(len(h))]).numpy()
            for h, r in zip(outs, real)
        ]

    assert_gram(c["act"], means(a), means(b), rtol=1e-12)


# -- item 6: a site that returns a buffer the next forward pass overwrites ---------------------


def test_the_baseline_pairs_batch_i_with_the_values_the_site_returned_in_batch_i_minus_1():
    from tests.torch_models import BufferedLinear

    a, b = BufferedLinear(1), BufferedLinear(2)
    data = batches(4, (30, 6))
    X = [a.lin(x).detach().numpy() for x in data]
    Y = [b.lin(x).detach().numpy() for x in data]
    c = compare(nn.Sequential(a), nn.Sequential(b), data, "0")
    assert_gram(c["0"], X, Y)
    matrix, sums, n = reference(X[1:], Y[:-1])
    base = c["0"].baseline_gram
    assert base.n_samples == n
    np.testing.assert_allclose(base.matrix, matrix, rtol=1e-10, atol=1e-10 * np.abs(matrix).max())
    # compare_all's baseline too
    cross = compare_all(nn.Sequential(a), nn.Sequential(b), data, ["0"])
    base = cross.pair("0", "0").baseline_gram
    np.testing.assert_allclose(base.matrix, matrix, rtol=1e-10, atol=1e-10 * np.abs(matrix).max())


def test_a_shared_module_whose_buffer_the_other_model_overwrites_is_run_again():
    from tests.torch_models import BufferedLinear

    shared = BufferedLinear(3, d_in=4)
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(6, 4), shared), nn.Sequential(nn.Linear(6, 4), shared)
    data = batches(3, (30, 6))
    c = compare(a, b, data, "1")
    X = [shared.lin(a[0](x)).detach().numpy() for x in data]
    Y = [shared.lin(b[0](x)).detach().numpy() for x in data]
    assert_gram(c["1"], X, Y)


# -- items 5 and 10: sequence-first layouts -----------------------------------------------------


def token_rows(t, real, tokens):
    """(N, L, C) outputs as samples by hand: real tokens, their float64 mean, or the first
    ("cls") or last real one."""
    t = t.double()
    if tokens == "samples":
        return t[real].numpy()
    if tokens == "mean":
        return torch.stack([t[i, real[i]].mean(dim=0) for i in range(len(t))]).numpy()
    pick = [int(torch.nonzero(real[i])[0 if tokens == "cls" else -1]) for i in range(len(t))]
    return torch.stack([t[i, j] for i, j in enumerate(pick)]).numpy()


@pytest.mark.parametrize("tokens", ["samples", "mean", "last"])
def test_a_sequence_first_lstm_is_read_as_lnc(tokens):
    from tests.torch_models import SequenceFirstEncoder, padded_batches

    a, b = SequenceFirstEncoder(1), SequenceFirstEncoder(2)
    data = padded_batches(n_batches=12, batch=8, length=7, side="right")
    sites = ["lstm", "head", "act"]
    c = compare(a, b, data, sites, tokens=tokens)
    per_model = []
    for m in (a, b):
        seen = hooked(m, sites, data, lambda m, x: m(**x))
        per_model.append(
            {
                s: [
                    token_rows(h.transpose(0, 1), x["attention_mask"].bool(), tokens)
                    for h, x in zip(seen[s], data)
                ]
                for s in sites
            }
        )
    for s in sites:
        assert c[s].layout == ("lnc", "lnc") and c[s].tokens == tokens
        assert_gram(c[s], per_model[0][s], per_model[1][s])
    assert c["lstm"].n_samples == (
        sum(int(x["attention_mask"].sum()) for x in data) if tokens == "samples" else 96
    )
    assert "lnc" in c.table()
    # compare_all reads it the same way
    cross = compare_all(
        a, b, data, ["act"], tokens=tokens, samples="inputs" if tokens == "samples" else "pool"
    )
    if tokens != "samples":
        np.testing.assert_allclose(cross.pair("act", "act").gram.matrix, c["act"].gram.matrix, rtol=1e-12)


def test_a_token_site_whose_leading_axis_is_not_the_batch_is_refused():
    from tests.torch_models import SequenceFirstEncoder, padded_batches

    data = padded_batches(n_batches=2, batch=8, length=7)
    with pytest.raises(
        ValueError, match=r"site 'lstm' of model_a gives outputs of shape \(7, 8, 10\) in batch 0: 7 along"
    ):
        compare(SequenceFirstEncoder(1), SequenceFirstEncoder(2), data, "lstm", layout="nlc", tokens="mean")


def test_a_sequence_first_attention_layer_elsewhere_leaves_the_selected_sites_alone():
    class WithSeqFirstAttention(nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.inp = nn.Linear(6, 8)
            self.attn = nn.MultiheadAttention(8, 2)  # batch_first=False
            self.out = nn.Linear(8, 4)

        def forward(self, x):  # x: (N, L, 6)
            h = self.inp(x).transpose(0, 1)
            h, _ = self.attn(h, h, h)
            return self.out(h.transpose(0, 1))

    a, b = WithSeqFirstAttention(1), WithSeqFirstAttention(2)
    data = batches(3, (10, 5, 6))
    c = compare(a, b, data, ["inp", "out"], tokens="mean")  # attn is not selected
    assert c["inp"].layout == c["out"].layout == ("nlc", "nlc")
    attn = compare(a, b, data, "attn", tokens="mean")["attn"]
    assert attn.layout == ("lnc", "lnc")
    real = torch.ones(10, 5, dtype=torch.bool)
    for s, turn in (("inp", False), ("out", False), ("attn", True)):
        X, Y = (
            [token_rows(h.transpose(0, 1) if turn else h, real, "mean") for h in hooked(m, [s], data)[s]]
            for m in (a, b)
        )
        assert_gram(attn if s == "attn" else c[s], X, Y)


# -- items 2 and 9: an encoder-decoder's masks, masks by site -----------------------------------


def seq2seq_reference(model, data, site, key, tokens="samples"):
    """A site's samples by hand: its hooked outputs, with the named mask of each batch."""
    seen = hooked(model, [site], data, lambda m, x: m(**x))[site]
    return [token_rows(h, x[key].bool(), tokens) for h, x in zip(seen, data)]


def test_an_encoder_decoders_decoder_sites_read_the_decoder_mask():
    from tests.torch_models import EncoderDecoder, seq2seq_batches

    a, b, data = EncoderDecoder(1), EncoderDecoder(2), seq2seq_batches()
    sites = ["encoder.0", "decoder.act"]
    c = compare(a, b, data, sites)
    for s, key in zip(sites, ("attention_mask", "decoder_attention_mask")):
        assert_gram(c[s], seq2seq_reference(a, data, s, key), seq2seq_reference(b, data, s, key))
    assert c["decoder.act"].n_samples == sum(int(x["decoder_attention_mask"].sum()) for x in data)
    cross = compare_all(a, b, data, ["decoder.act"], samples="inputs")
    X, Y = (seq2seq_reference(m, data, "decoder.act", "decoder_attention_mask", "mean") for m in (a, b))
    matrix, _, n = reference(X, Y)
    got = cross.pair("decoder.act", "decoder.act").gram
    assert got.n_samples == n
    np.testing.assert_allclose(got.matrix, matrix, rtol=1e-10, atol=1e-10 * np.abs(matrix).max())


def test_a_token_site_outside_encoder_and_decoder_needs_its_own_mask():
    from tests.torch_models import EncoderDecoder, seq2seq_batches

    a, b, data = EncoderDecoder(1), EncoderDecoder(2), seq2seq_batches()
    with pytest.raises(
        ValueError, match=r"site 'lm_head' of model_a is a token site outside the encoder and"
    ):
        compare(a, b, data, "lm_head")
    with pytest.raises(ValueError, match=r"site 'embed#1' of model_a .* pass mask=\{'embed#1': lambda batch"):
        compare_all(a, b, data, ["embed#1"])
    no_decoder_mask = [{k: v for k, v in x.items() if k != "decoder_attention_mask"} for x in data]
    with pytest.raises(
        ValueError, match=r"'decoder.act' of model_a .* the batch has no decoder_attention_mask"
    ):
        compare(a, b, no_decoder_mask, "decoder.act")
    # mask= by site: the head reads the decoder's mask, the encoder keeps the batch's
    decoder_mask = {"lm_head": lambda x: x["decoder_attention_mask"]}
    c = compare(a, b, data, ["lm_head", "encoder.0"], mask=decoder_mask, tokens="mean")
    for s, key in (("lm_head", "decoder_attention_mask"), ("encoder.0", "attention_mask")):
        X, Y = (seq2seq_reference(m, data, s, key, "mean") for m in (a, b))
        assert_gram(c[s], X, Y)
    with pytest.raises(ValueError, match=r"mask names \['nope'\], which no selected site is"):
        compare(a, b, data, "encoder.0", mask={"nope": lambda x: x["attention_mask"]})
    with pytest.raises(TypeError, match=r"mask\['lm_head'\] must be a callable"):
        compare(a, b, data, "lm_head", mask={"lm_head": "decoder_attention_mask"})


# -- item 7: writes the version counter does not see ----------------------------------------------


class WritesThroughData(nn.Module):
    """A Linear whose output is then rescaled through ``.data`` (its version counter stays)."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        h = self.lin(x)
        y = self.out(h)
        h.data.mul_(-3.0)
        return y + h.sum()


def test_clone_copies_outputs_that_are_changed_through_data():
    a, b, data = WritesThroughData(1), WritesThroughData(2), batches(3, (30, 6))
    X, Y = ([m.lin(x).detach().numpy() for x in data] for m in (a, b))
    for clone in (True, ["lin"], "lin"):
        assert_gram(compare(a, b, data, ["lin", "out"], clone=clone)["lin"], X, Y)
    cross = compare_all(a, b, data, ["lin"], clone=True)
    matrix, _, _ = reference(X, Y)
    np.testing.assert_allclose(cross.pair("lin", "lin").gram.matrix, matrix, rtol=1e-10)
    # what the counter does not see, nsm cannot: without clone the values are the rescaled ones
    c = compare(a, b, data, "lin")
    assert not np.allclose(c["lin"].gram.matrix, matrix)
    with pytest.raises(ValueError, match=r"clone names \['nope'\], which no selected site is"):
        compare(a, b, data, "lin", clone=["nope"])
    with pytest.raises(TypeError, match="clone must be True, False or a list of site names"):
        compare(a, b, data, "lin", clone=1)


# -- item 8: the mixed pass on few samples ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore::nsm.FewSamplesWarning")  # 64 samples for 64 + 64 neurons
@pytest.mark.parametrize("on", ["compare", "compare_all"])
def test_a_starved_pair_under_the_mixed_pass_gets_the_float64_pass(on):
    from tests.torch_models import padded_batches

    a, b, data = Tokens(1, d=64), Tokens(2, d=64), padded_batches(n_batches=8, batch=8, side="right")

    def means(model):
        outs = hooked(model, ["act"], data, lambda m, x: m(**x))["act"]
        return [token_rows(h, x["attention_mask"].bool(), "mean") for h, x in zip(outs, data)]

    X, Y = np.vstack(means(a)), np.vstack(means(b))
    if on == "compare":
        lc = nsm.torch.compare(a, b, data, "act", tokens="mean", precision="mixed", progress=False)["act"]
    else:
        cross = nsm.torch.compare_all(a, b, data, "act", samples="inputs", precision="mixed", progress=False)
        lc = cross.pair("act", "act")
    matrix, _, n = reference([X], [Y])
    assert lc.n_samples == n == 64
    # the means are float32 under the mixed pass (as the model's own float32 values are), the
    # products float64: the Gram is the float64 one of the float32-rounded means
    Xr, Yr = X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64)
    matrix, _, _ = reference([Xr], [Yr])
    np.testing.assert_allclose(lc.gram.matrix, matrix, rtol=1e-12, atol=1e-12 * np.abs(matrix).max())
    eps = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(lc.similarity(eps), nsm.match_thresholds(X, Y).similarity(eps), atol=1e-12)


# -- item 11: which output of a module is compared ----------------------------------------------


class AuxThenHidden(nn.Module):
    """A block that returns ``(aux, hidden)`` (or a dict of them): the hidden state is what the
    next layer reads."""

    def __init__(self, as_dict=False):
        super().__init__()
        self.aux, self.hidden, self.as_dict = nn.Linear(6, 3), nn.Linear(6, 7), as_dict

    def forward(self, x):
        aux, hidden = self.aux(x), torch.tanh(self.hidden(x))
        return {"aux": aux, "hidden": hidden} if self.as_dict else (aux, hidden)


class WithAux(nn.Module):
    def __init__(self, seed, as_dict=False):
        super().__init__()
        torch.manual_seed(seed)
        self.block, self.head = AuxThenHidden(as_dict), nn.Linear(7, 2)

    def forward(self, x):
        out = self.block(x)
        return self.head(out["hidden"] if isinstance(out, dict) else out[1])


def test_output_selects_what_a_site_is_compared_on_and_the_table_says_so():
    a, b, data = WithAux(1), WithAux(2), batches(4, (40, 6))
    hidden = [[torch.tanh(m.block.hidden(x)).detach().numpy() for x in data] for m in (a, b)]
    aux = [[m.block.aux(x).detach().numpy() for x in data] for m in (a, b)]
    c = compare(a, b, data, "block")  # the default, item 0, is named in the table
    assert_gram(c["block"], *aux)
    assert "output [0] of 2" in c["block"].notes and "output [0] of 2" in c.table()
    for spec, note in ((1, "output [1]"), (lambda out: out[1], "output <lambda>()")):
        c = compare(a, b, data, "block", output={"block": spec})
        assert_gram(c["block"], *hidden)
        assert c["block"].n_x == 7 and note in c["block"].notes
    a, b = WithAux(1, as_dict=True), WithAux(2, as_dict=True)
    c = compare(a, b, data, "block", output="hidden")
    assert_gram(c["block"], *hidden)
    cross = compare_all(a, b, data, ["block"], output={"block": "hidden"})
    matrix, _, _ = reference(*hidden)
    np.testing.assert_allclose(cross.pair("block", "block").gram.matrix, matrix, rtol=1e-10)
    with pytest.raises(ValueError, match=r"output names \['nope'\], which no selected site is"):
        compare(a, b, data, "block", output={"nope": 1, "block": "hidden"})
    with pytest.raises(TypeError, match=r"output= for site 'block' selects NoneType"):
        compare(a, b, data, "block", output={"block": "missing"})
    with pytest.raises(TypeError, match=r"output\['block'\] must be an index into a tuple output"):
        compare(a, b, data, "block", output={"block": 1.5})


# -- item 12: transformers' Conv1D and ViT's embeddings (skipped without transformers) ------------


def test_gpt2_conv1d_projections_and_their_activation_are_channels_last():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from tests.torch_models import padded_batches

    config = transformers.GPT2Config(vocab_size=60, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(transformers.GPT2Model(config).eval())
    data = padded_batches(n_batches=20, batch=8, length=9, side="right")
    sites = ["h.0.attn.c_attn", "h.0.mlp.c_fc", "h.0.mlp.act"]
    c = compare(*models, data, sites, tokens={"h.0.mlp.act": "last"})
    real = [x["attention_mask"].bool() for x in data]
    for s in sites:
        assert c[s].layout == ("nlc", "nlc")
        mode = "last" if s == "h.0.mlp.act" else "samples"
        X, Y = (
            [token_rows(h, r, mode) for h, r in zip(hooked(m, [s], data, lambda m, x: m(**x))[s], real)]
            for m in models
        )
        assert_gram(c[s], X, Y, rtol=1e-9)
    assert c["h.0.mlp.c_fc"].n_x == 64


def test_vit_embeddings_take_the_layout_of_the_layers_they_feed():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
    )
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(transformers.ViTModel(config, add_pooling_layer=False).eval())
    data = [{"pixel_values": x} for x in batches(6, (10, 3, 16, 16))]
    sites = ["embeddings", "layers.0"]
    c = compare(*models, data, sites, tokens="cls")
    real = torch.ones(10, 17, dtype=torch.bool)
    for s in sites:
        assert c[s].layout == ("nlc", "nlc")
        X, Y = (
            [token_rows(h, real, "cls") for h in hooked(m, [s], data, lambda m, x: m(**x))[s]] for m in models
        )
        assert_gram(c[s], X, Y, rtol=1e-9)


def test_t5_decoder_sites_read_the_decoder_mask():
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from tests.torch_models import seq2seq_batches

    config = transformers.T5Config(
        vocab_size=60, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2, dropout_rate=0.0
    )
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(transformers.T5Model(config).eval())
    data = seq2seq_batches(n_batches=12)
    sites = {"encoder.block.0.layer.1.DenseReluDense.wo": "attention_mask"}
    sites["decoder.block.0.layer.2.DenseReluDense.wo"] = "decoder_attention_mask"
    c = compare(*models, data, list(sites))
    for s, key in sites.items():
        assert c[s].layout == ("nlc", "nlc")
        X, Y = (seq2seq_reference(m, data, s, key) for m in models)
        assert_gram(c[s], X, Y, rtol=1e-9)


@pytest.mark.parametrize("precision", ["float64", "mixed"])
def test_the_precision_used_is_in_the_table_the_rows_and_the_saved_files(tmp_path, precision):
    # Item 13: the pass that made the Grams was only on the Gram, lost in a saved report.
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU())
    data = [torch.randn(64, 6) for _ in range(3)]
    c = nsm.torch.compare(a, b, data, ["1"], progress=False, precision=precision)
    assert c["1"].precision == precision == c["1"].gram.precision
    assert f"Grams: the {precision} pass" in c.table()
    assert c.to_rows()[0]["precision"] == precision
    c.save(tmp_path / "report.json")
    back = nsm.Comparison.load(tmp_path / "report.json")
    assert back["1"].precision == precision and f"the {precision} pass" in back.table()
    grid = nsm.torch.compare_all(a, b, data, ["1"], progress=False, precision=precision)
    grid.save(tmp_path / "cross.json")
    loaded = nsm.CrossComparison.load(tmp_path / "cross.json")
    assert loaded.info["precision"] == precision and loaded.to_rows()[0]["precision"] == precision
