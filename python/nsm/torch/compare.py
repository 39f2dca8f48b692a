"""nsm.torch.compare: stream batches through two models and compare their sites pair by pair."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union, cast

import torch
from torch import nn

from .. import _diagnostics
from .._diagnostics import FewSamplesWarning
from .._validation import (
    DEFAULT_PRECISION,
    Precision,
    check_bool,
    check_eps,
    check_groups,
    check_max_batches,
    check_per_site,
    check_precision,
)
from ..gram import Gram
from ..match.engines import Engine, check_engine
from ..match.thresholds import Thresholds, match_thresholds
from ..results import DEFAULT_EPS, Comparison, LayerComparison
from . import distributed
from .accumulate import DeviceGram, gram_from_parts
from .baseline import ShiftedBaseline
from .capture import OutputSpec, Tap, check_clone, check_clone_used, check_output, check_output_used
from .layout import LAYOUTS, TOKEN_LAYOUTS, TOKEN_MODES, check_batch_axis, n_samples, sample_rows
from .masks import MaskRule, MaskSource, check_mask
from .sites import LayerSpec, Selection, Site, SitePair
from .stream import Fed, Stream, check_groups_fit, comparison_device

__all__ = ["compare"]

PerSite = Union[str, Mapping[Any, str], None]
OutputArg = Union[OutputSpec, Mapping[str, OutputSpec], None]
MaskSpec = Union[Callable[[Any], torch.Tensor], Mapping[Any, Callable[[Any], torch.Tensor]], None]


class _PerSite:
    """Looks up a per-site setting; every key of a dict must name a selected site."""

    def __init__(self, value: Any, name: str) -> None:
        self.value, self.name = value, name
        self.used: set[Any] = set()

    def get(self, pair: SitePair, site: Site) -> Any:
        if not isinstance(self.value, dict):
            return self.value
        for key in (pair.key, site.label):
            if key in self.value:
                self.used.add(key)
                return self.value[key]
        return None

    def check_used(self) -> None:
        if isinstance(self.value, dict):
            unused = [k for k in self.value if k not in self.used]
            if unused:
                raise ValueError(f"{self.name} names {unused!r}, which no selected site is")


@dataclass
class _Plan:
    """One site pair: where its values come from and how they become samples."""

    pair: SitePair
    layout_a: str
    layout_b: str
    tokens: str
    mask_a: MaskSource
    mask_b: MaskSource
    notes: tuple[str, ...] = ()
    gram: DeviceGram | None = None
    baseline: ShiftedBaseline | None = None


def _layout_of(tap: Tap, site: Site, given: str | None, which: str) -> str:
    value = tap.value(site.module, site.index)
    if given is not None:
        if len(given) != value.ndim:
            raise ValueError(
                f"layout {given!r} for site {site.label!r} of {which} does not fit its "
                f"outputs of shape {tuple(value.shape)}"
            )
        return given
    if value.ndim not in (2, 3, 4, 5):
        raise ValueError(
            f"site {site.label!r} of {which} gives outputs of shape {tuple(value.shape)}; "
            "nsm needs (N, C) units, (N, C, ...) channels or (N, L, C) tokens: pick "
            "another site"
        )
    inferred = tap.layouts.get((site.module, site.index))
    if inferred is None and tap.provenance is not None:
        # outputs of the same shape later in the forward pass (a container's output, such
        # as ViT's embeddings, matches the encoder layers it feeds)
        inferred = tap.provenance.by_shape(tuple(value.shape))
    if inferred is None:
        raise ValueError(
            f"cannot tell which axis holds the neurons of site {site.label!r} of {which} (outputs "
            f"of shape {tuple(value.shape)}): pass layout= for it, one of 'nc', 'ncl', 'nlc', "
            "'lnc', 'nchw', 'nhwc', 'ncdhw', 'ndhwc'"
        )
    return inferred


def _thresholds(
    gram: Gram | None,
    count_dead: bool,
    label: str,
    notes: list[str],
    centered: bool = False,
    engine: Engine = "auto",
    device: Any = None,
) -> Thresholds | None:
    """Thresholds, with nsm's warnings re-issued at the caller's line under the site's name
    (``engine`` as for nsm.match_thresholds, on the comparison's ``device`` unless it is the
    core)."""
    if gram is None or gram.n_samples == 0:
        return None
    where = None if engine == "core" else device
    with _diagnostics.collect() as caught:
        t = match_thresholds(gram, count_dead=count_dead, centered=centered, engine=engine, device=where)
    for message, category in caught:
        if issubclass(category, FewSamplesWarning):
            notes.append(f"few samples{' (baseline)' if 'baseline' in label else ''}")
        _diagnostics.warn(f"{label}: {message}", category)
    return t


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable[Any] | torch.Tensor,
    layers: LayerSpec,
    *,
    eps: float | Iterable[float] = DEFAULT_EPS,
    device: Any = None,
    max_batches: int | None = None,
    layout: PerSite = None,
    tokens: PerSite = "samples",
    mask: MaskSpec = None,
    progress: bool = True,
    count_dead: bool = True,
    baseline: bool = True,
    precision: Precision = DEFAULT_PRECISION,
    centered: bool = False,
    groups: int | None = None,
    clone: bool | Sequence[str] = False,
    output: OutputArg = None,
    engine: Engine = "auto",
) -> Comparison:
    """Compare two models site by site on the same data.

    Streams ``data`` through both models under ``torch.no_grad()`` in eval mode and adds each
    batch's activations of every selected site pair to that pair's float64 Gram, computed where
    the activations live (nsm's C++ kernels on the CPU, float64 matmuls on a GPU). Memory is
    O(n²) per pair whatever the number of samples. Under ``torch.distributed`` each rank
    streams its own shard and the Grams are summed (every rank gets the same result; a rank
    with no batch takes part).

    A *site* is one call of a module: ``"name"`` for a module called once per forward,
    ``"name#0"``, ``"name#1"``... for a module called several times (torchvision's
    ``BasicBlock.relu``). The values compared are each module's output at the moment it
    returned, whatever in-place operation follows. A model that writes into its input
    (``x /= 2``: the version counter of a tensor it is given moves) gets a copy of every batch,
    so the other model and the caller's data see the batch as it came. A site's batch axis must
    hold every input of the batch once (a capacity-routed expert, which sees some of them,
    is refused with an error naming it): the samples are paired input by input.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two networks. DataParallel, DistributedDataParallel and ``torch.compile`` wrappers
        are unwrapped (site names never carry ``module.`` or ``_orig_mod.``) and the module
        inside runs.
    data : iterable of batches, or one tensor
        Batches: tensors, tuples or lists whose first item is the input, or dicts of keyword
        arguments for the models. A bare tensor is one batch. Anything iterable streams (a
        generator, a DataLoader over an ``IterableDataset``); a length, where there is one, only
        sets the progress bar's total.
    layers : site, (site_a, site_b), list of those, module type, or predicate(name, module)
        Which sites to compare. A type or predicate selects every site of the matching modules,
        paired in call order. A module that runs several times must be named with ``#i``.
    eps : float or sequence of floats
        The ε values of the summary table (every ε is available afterwards).
    device : torch device, optional
        Where to run; default: the device of ``model_a``'s parameters.
    max_batches : int, optional
        Stop after this many batches (an iterator is read no further: the next batch stays
        with the caller).
    layout : str or dict, optional
        The axes of the outputs, for every site or per site label (or ``(label_a, label_b)``):
        ``"nc"``, ``"ncl"``, ``"nlc"``, ``"lnc"``, ``"nchw"``, ``"nhwc"``, ``"ncdhw"``,
        ``"ndhwc"`` (``n`` the batch, ``c`` the neurons; positions are samples; ``l`` in
        ``"nlc"`` and in sequence-first ``"lnc"`` is a token axis).
        By default it is inferred from the module's type (convolutions, pools and norms are
        channels first; Linear, LayerNorm, attention and RNNs channels last, ``"lnc"`` for
        modules built with ``batch_first=False``) or, for element-wise and other modules, from
        the module that produced the tensor; a ValueError asks for it where nothing decides.
    tokens : {'samples', 'mean', 'cls', 'last'} or dict
        For ``"nlc"`` and ``"lnc"`` sites: every real token is a sample, or the mean of the real
        tokens, or the first or the last real token of each input. Per site like ``layout``.
    mask : callable or dict, optional
        ``mask(batch)`` gives the (N, L) bool tensor of real tokens, for every token site; a
        dict gives one callable per site label (or ``(label_a, label_b)``), the other sites
        keeping the default. By default a dict batch's ``"attention_mask"`` is used (the
        Hugging Face convention); masked positions are not samples and do not enter the mean.
        In an encoder-decoder model (``config.is_encoder_decoder``, or a model with both an
        ``encoder`` and a ``decoder``) the batch's ``attention_mask`` applies to the encoder's
        sites only, its ``"decoder_attention_mask"`` to the decoder's, and a token site
        elsewhere (or a decoder site of a batch with no decoder mask) raises a ValueError
        naming it unless ``mask=`` gives it one.
    progress : bool
        Show a progress bar over batches (tqdm).
    count_dead : bool
        Count dead neurons in the similarity's denominator.
    baseline : bool
        Also accumulate the shifted-batch baseline (batch i of A against batch i-1 of B; about
        as costly again as the Gram); without it ``LayerComparison.baseline`` gives NaN.
    precision : {'mixed', 'float64'}
        How float32 activations are multiplied into the float64 Grams, as for :class:`nsm.Gram`
        (on a GPU too, with TF32 off). Under ``"mixed"`` a pair's first
        ``nsm.starved.FEW_SAMPLES_RATIO * (n_x + n_y)`` samples take the float64 pass, so a
        starved pair (whose critical ε the float32 products would move) is float64 throughout.
        Means over tokens and positions are summed in float64 either way.
    centered : bool
        Compare with the centred match (:func:`nsm.max_match`'s ``centered``): each neuron's
        mean over the samples is removed, from the Grams' column sums; the baseline is centred
        too. The Grams kept are the raw ones either way.
    groups : int >= 2, optional
        Jackknife error bars: the batches are dealt round-robin into ``groups`` groups (batch i
        to group i mod K; a batch is one unit, so use batches of independent inputs and at
        least K of them) and a Gram is kept per group: memory K + 1 Grams per pair, on the
        device, and K + 1 peelings at the end. Each layer then gives
        :meth:`~nsm.LayerComparison.similarity_se`, ``similarity_interval``,
        ``match_auc_estimate`` and ``linear_cka(se=True)``; the table prints ``value ± se``
        and the curves figure a band (docs/method.md, "Error bars"). The baseline keeps no
        groups. Fewer batches than groups is a ValueError, raised before the pass when the
        length of ``data`` or ``max_batches`` says so. Under torch.distributed each rank
        deals its own batches (group k sums every rank's group k), so every rank needs at
        least K batches.
    clone : bool or list of site names
        Copy the outputs of every site (True), or of the named ones (``"name"`` for every call
        of a module, ``"name#i"`` for one; in either model), as the module returns them. Not
        needed for in-place operations, ``out=`` arguments and ``copy_``: they move the
        tensor's version counter, and nsm copies the outputs they overwrite by itself. Writes
        the counter does not see are those through ``.data``, through NumPy or DLPack views
        and from custom kernels; a site whose output is changed that way needs ``clone``.
    output : int, str, callable or dict, optional
        What a site's output is compared on, when a module returns more than a tensor: an
        index into a tuple or list, a key (or attribute) of a dict or ``ModelOutput``, or a
        callable ``output -> tensor``; one for every site, or a dict by site name (``"name"``
        or ``"name#i"``, in either model). By default: the tensor itself, a ModelOutput's
        ``last_hidden_state``, or item 0 of a tuple or list. The table's note column says
        which output was compared when it is not the default, and ``output [0] of k`` when
        the default took item 0 of a tuple of k tensors (``nn.MultiheadAttention``,
        ``nn.LSTM``). The layout of a non-default output is not inferred from the module's
        type (it describes its main output): it comes from the module that produced the
        tensor, or ``layout=``.
    engine : {'auto', 'core', 'torch'}
        Which engine computes the thresholds, as for :func:`nsm.match_thresholds`: ``"auto"``
        takes the torch engine on ``device`` when it is a GPU, the C++ core otherwise.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import torch, nsm.torch
    >>> _ = torch.manual_seed(0)
    >>> a = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    >>> data = [torch.randn(256, 8) for _ in range(8)]
    >>> c = nsm.torch.compare(a, b, data, "1", progress=False)
    >>> c["1"].n_samples, c["1"].layout
    (2048, ('nc', 'nc'))
    >>> bool(c["1"].similarity(0.5) > 0)
    True

    A module that returns ``(aux, hidden)`` is compared on ``hidden`` with ``output=``, and a
    token site's mask can be given per site:

    >>> class Block(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.aux, self.hidden = torch.nn.Linear(8, 2), torch.nn.Linear(8, 16)
    ...     def forward(self, x):
    ...         return self.aux(x), self.hidden(x)
    >>> a, b = torch.nn.Sequential(Block()), torch.nn.Sequential(Block())
    >>> c = nsm.torch.compare(a, b, data, "0", output={"0": 1}, progress=False)
    >>> c["0"].n_x, c["0"].notes
    (16, ('output [1]',))
    >>> tokens = [torch.randn(32, 5, 8) for _ in range(4)]
    >>> first3 = {"0": lambda x: torch.arange(5).expand(32, 5) < 3}  # 3 real tokens each
    >>> c = nsm.torch.compare(a, b, tokens, "0", output=1, mask=first3, progress=False)
    >>> c["0"].n_samples
    384
    """
    eps_values, _ = check_eps(eps)
    max_batches = check_max_batches(max_batches)
    progress = check_bool(progress, "progress")
    count_dead = check_bool(count_dead, "count_dead")
    baseline = check_bool(baseline, "baseline")
    precision = check_precision(precision)
    centered = check_bool(centered, "centered")
    engine = cast(Engine, check_engine(engine, None)[0])
    groups = check_groups(groups)
    layouts = _PerSite(check_per_site(layout, "layout", LAYOUTS), "layout")
    modes = _PerSite(check_per_site(tokens, "tokens", TOKEN_MODES), "tokens")
    mask = check_mask(mask)
    masks = MaskRule(mask, model_a, model_b)
    cloned = check_clone(clone)
    outputs = check_output(output)
    selection = Selection(model_a, model_b, layers)
    device = comparison_device(model_a, model_b, device)
    plans: list[_Plan] | None = None
    error: BaseException | None = None
    stream = Stream(
        model_a,
        model_b,
        data,
        (selection.watch_a, selection.watch_b),
        device=device,
        mask=mask if callable(mask) else None,
        max_batches=max_batches,
        progress=progress,
        label="nsm compare",
        clone=cloned,
        output=outputs,
    )
    try:
        check_groups_fit(groups, stream)
        with stream:
            for fed in stream:
                if plans is None:
                    plans = _plan(selection, fed.tap_a, fed.tap_b, layouts, modes, masks)
                    sites = [s for p in plans for s in (p.pair.a, p.pair.b)]
                    check_clone_used(cloned, sites)
                    check_output_used(outputs, sites)
                for plan in plans:
                    _add(plan, fed, masks, baseline, precision, groups)
    except Exception as exc:  # every rank must hear of it before the sums below
        error = exc
    if distributed.running():
        description = None if plans is None else [_describe(p) for p in plans]
        description = distributed.agree(description, error)
        if description is None:
            raise ValueError("data gave no batch on any rank")
        return _finish(
            _reduced(plans, description, device, baseline, groups),
            eps_values,
            count_dead,
            centered,
            engine,
            device,
        )
    if error is not None:
        raise error
    if plans is None:
        raise ValueError("data gave no batch")
    results: list[tuple[Any, Gram, Gram | None]] = [
        (p, _acc(p).result(), p.baseline.acc.result() if p.baseline else None) for p in plans
    ]
    return _finish(results, eps_values, count_dead, centered, engine, device)


def _acc(plan: _Plan) -> DeviceGram:
    """The plan's Gram, which its first batch created."""
    assert plan.gram is not None
    return plan.gram


def _plan(
    selection: Selection, tap_a: Tap, tap_b: Tap, layouts: _PerSite, modes: _PerSite, masks: MaskRule
) -> list[_Plan]:
    pairs = selection.resolve(tap_a.calls(), tap_a.order, tap_b.calls(), tap_b.order)
    plans = []
    for pair in pairs:
        la = _layout_of(tap_a, pair.a, layouts.get(pair, pair.a), "model_a")
        lb = _layout_of(tap_b, pair.b, layouts.get(pair, pair.b), "model_b")
        mode_a, mode_b = modes.get(pair, pair.a), modes.get(pair, pair.b)
        if mode_a != mode_b:
            raise ValueError(
                f"tokens for {pair.key!r}: {mode_a!r} for model_a's site but {mode_b!r} "
                "for model_b's; both sides of a pair need the same samples"
            )
        mask_a, mask_b = masks.source("model_a", pair.a, pair.key), masks.source("model_b", pair.b, pair.key)
        notes = _output_notes(
            tap_a.picked.get((pair.a.module, pair.a.index)), tap_b.picked.get((pair.b.module, pair.b.index))
        )
        plans.append(_Plan(pair, la, lb, mode_a or "samples", mask_a, mask_b, notes))
    layouts.check_used()
    modes.check_used()
    masks.check_used()
    return plans


def _output_notes(a: str | None, b: str | None) -> tuple[str, ...]:
    """The note that says which output a pair compares, when it is not the default."""
    if a is None and b is None:
        return ()
    return (a or "output",) if a == b else (f"{a or 'output'} / {b or 'output'}",)


def _add(
    plan: _Plan, fed: Fed, masks: MaskRule, baseline: bool, precision: Precision, groups: int | None = None
) -> None:
    pair = plan.pair
    va = fed.tap_a.value(pair.a.module, pair.a.index)
    vb = fed.tap_b.value(pair.b.module, pair.b.index)
    check_batch_axis(va, plan.layout_a, fed.inputs, pair.a.label, "model_a", fed.number)
    check_batch_axis(vb, plan.layout_b, fed.inputs, pair.b.label, "model_b", fed.number)
    ma = _mask(masks, plan.mask_a, plan.layout_a, fed, pair.a.label, "model_a")
    mb = _mask(masks, plan.mask_b, plan.layout_b, fed, pair.b.label, "model_b")
    a = sample_rows(va, plan.layout_a, plan.tokens, ma, pair.a.label, precision)
    b = sample_rows(vb, plan.layout_b, plan.tokens, mb, pair.b.label, precision)
    if n_samples(a) != n_samples(b):
        raise ValueError(
            f"site {pair.key!r}: model_a gives {n_samples(a)} samples per batch "
            f"(layout {plan.layout_a!r}) but model_b gives {n_samples(b)} (layout "
            f"{plan.layout_b!r}); both must see the same inputs at the same positions"
        )
    if plan.gram is None:
        plan.gram = DeviceGram(a.shape[1], b.shape[1], a.device, precision, groups)
        plan.baseline = (
            ShiftedBaseline(DeviceGram(a.shape[1], b.shape[1], a.device, precision)) if baseline else None
        )
    try:
        plan.gram.update(a, b)
        if plan.baseline is not None:
            plan.baseline.update(a, b)
    except ValueError as exc:
        raise ValueError(f"site {pair.key!r}: {exc}") from None


def _mask(
    masks: MaskRule, source: MaskSource, layout: str, fed: Fed, site: str, which: str
) -> torch.Tensor | None:
    """A token site's mask in this batch (other sites read none)."""
    if layout not in TOKEN_LAYOUTS:
        return None
    return masks.of(source, fed.batch, fed.number, site, which)


def _describe(plan: _Plan) -> tuple:
    g = _acc(plan)
    return (plan.pair.key, g.n_x, g.n_y, plan.layout_a, plan.layout_b, plan.tokens)


@dataclass
class _Described:
    """A site pair on a rank that may have seen no batch: enough to take part in the sums."""

    key: Any
    layout_a: str
    layout_b: str
    tokens: str


def _reduced(
    plans: list[_Plan] | None,
    description: list[tuple],
    device: torch.device,
    baseline: bool,
    groups: int | None = None,
) -> list[tuple[Any, Gram, Gram | None]]:
    out: list[tuple[Any, Gram, Gram | None]] = []
    for i, (key, n_x, n_y, la, lb, mode) in enumerate(description):
        plan = plans[i] if plans is not None else None
        parts: list[Gram | None] = []
        for which in ("gram", "baseline"):
            if which == "baseline" and not baseline:
                parts.append(None)
                continue
            acc = None
            if plan is not None:
                acc = plan.gram if which == "gram" else plan.baseline.acc if plan.baseline else None
            if acc is None:
                acc = DeviceGram(n_x, n_y, device, groups=groups if which == "gram" else None)
            m, s, c = distributed.all_reduce_parts(*acc.parts())
            # Each rank dealt its own batches in turn; group k sums over the ranks' group k.
            own, dealt = acc.group_parts_of()
            summed = [distributed.all_reduce_parts(*part) for part in own]
            dealt = distributed.all_reduce_parts(*_count_part(dealt, device))[2] if own else 0
            parts.append(gram_from_parts(m, s, c, n_x, summed, dealt, acc.precision))
        assert parts[0] is not None
        out.append((_Described(key, la, lb, mode), parts[0], parts[1]))
    return out


def _count_part(count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A count as the (matrix, sums, count) that all_reduce_parts sums."""
    zero = torch.zeros(1, 1, dtype=torch.float64, device=device)
    return zero, torch.zeros(1, dtype=torch.float64, device=device), count


def _finish(
    results: list[tuple[Any, Gram, Gram | None]],
    eps: list[float],
    count_dead: bool,
    centered: bool = False,
    engine: Engine = "auto",
    device: Any = None,
) -> Comparison:
    layers = {}
    for plan, gram, base in results:
        key = plan.pair.key if isinstance(plan, _Plan) else plan.key
        label = key if isinstance(key, str) else f"{key[0]} / {key[1]}"
        notes: list[str] = list(plan.notes) if isinstance(plan, _Plan) else []
        thresholds = _thresholds(gram, count_dead, f"site {label!r}", notes, centered, engine, device)
        if thresholds is None:
            raise ValueError(f"site {label!r} gave no samples in any batch")
        base_thresholds = _thresholds(
            base, count_dead, f"site {label!r}, baseline", notes, centered, engine, device
        )
        layers[key] = LayerComparison(
            name=key,
            thresholds=thresholds,
            baseline_thresholds=base_thresholds,
            eps=tuple(eps),
            gram=gram,
            baseline_gram=base if base is not None and base.n_samples else None,
            layout=(plan.layout_a, plan.layout_b),
            tokens=plan.tokens if {plan.layout_a, plan.layout_b} & set(TOKEN_LAYOUTS) else None,
            notes=tuple(notes),
            precision=None if gram is None else gram.precision,
        )
    return Comparison(layers, eps)
