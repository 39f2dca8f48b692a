"""nsm.torch.compare_all: every site of model A against every site of model B, in one pass.

Pairs share samples in one of two ways. ``samples="inputs"``: every site is reduced to one
vector per input (the mean over positions and real tokens), so every pair has the inputs as
samples. ``samples="pool"``: a pair's finer spatial map is average-pooled to the coarser one's
grid, so (input, coarse position) pairs are the samples; a site with one vector per input pools
the other to one position; token sites pair with token sites of the same length. For each grid
that some pair needs, the blocks of the Gram over all the sites pooled to it that pairs read are
accumulated where the activations live (each site's own block and A's sites against B's:
``nsm.torch.site_blocks``), and each pair's Gram is assembled from them when it is read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

from .._validation import (
    DEFAULT_PRECISION,
    Precision,
    check_bool,
    check_choice,
    check_groups,
    check_max_batches,
    check_per_site,
    check_precision,
)
from ..gram import Gram
from ..match.engines import Engine, check_engine, choose_engine
from ..measures import SharedCentering
from ..results.cross import CrossComparison, SharedBlock, SharedGrams
from .baseline import ShiftedBaseline
from .capture import Tap, check_clone, check_clone_used, check_output, check_output_used
from .compare import (
    MaskSpec,
    OutputArg,
    PerSite,
    _layout_of,
    _PerSite,
)
from .layout import LAYOUTS, TOKEN_LAYOUTS, TOKEN_MODES, check_batch_axis, mean_over, sample_rows
from .masks import MaskRule, MaskSource, check_mask
from .site_blocks import KeptBlocks, SiteBlocks
from .sites import ModelSelection, Site, SitePair
from .stream import Stream, check_groups_fit, comparison_device

__all__ = ["compare_all"]

SAMPLE_MODES = ("pool", "inputs")
DEFAULT_MAX_BYTES = 4 * 2**30
Grid = tuple  # () one vector per input; ("tokens", L); or spatial sizes such as (H, W)


class _SiteInfo:
    """A site of one model: its layout, token mode, width and grid."""

    def __init__(
        self, site: Site, which: str, layout: str, tokens: str, shape: tuple[int, ...], mask: MaskSource
    ) -> None:
        self.site, self.which, self.layout, self.tokens, self.mask = site, which, layout, tokens, mask
        self.grid: tuple[Any, ...]
        if layout == "nc":
            self.width, self.grid = shape[1], ()
        elif layout in TOKEN_LAYOUTS:
            self.width = shape[2]
            length = shape[layout.index("l")]
            self.grid = ("tokens", length) if tokens == "samples" else ()
        elif layout[1] == "c":
            self.width, self.grid = shape[1], tuple(shape[2:])
        else:
            self.width, self.grid = shape[-1], tuple(shape[1:-1])

    @property
    def label(self) -> str:
        return self.site.label


def _common_grid(a: Grid, b: Grid) -> tuple[Grid | None, str]:
    """The grid a pair shares its samples on, or None and why it cannot."""
    if a == b:
        return a, ""
    if a == () or b == ():
        return (), ""
    if a[:1] == ("tokens",) or b[:1] == ("tokens",):
        return None, f"a token site with {a} cannot share samples with one with {b}"
    if len(a) != len(b):
        return None, f"grids {a} and {b} have different dimensions"
    fine, coarse = (a, b) if a[0] >= b[0] else (b, a)
    if all(f >= c and f % c == 0 for f, c in zip(fine, coarse)):
        return coarse, ""
    return None, f"the grid {fine} does not pool evenly onto {coarse}"


def _pool(x: torch.Tensor, grid: Grid, precision: Precision) -> torch.Tensor:
    """Average-pool (N, C, *fine) onto ``grid``, which divides it evenly: each coarse position
    is the mean of its block of fine positions, summed in float64."""
    shape = list(x.shape[:2])
    for fine, coarse in zip(x.shape[2:], grid):
        shape += [coarse, fine // coarse]
    blocks = tuple(range(3, len(shape), 2))
    return mean_over(x.reshape(shape), blocks, precision)


def _to_grid(
    t: torch.Tensor, info: _SiteInfo, grid: Grid, mask: torch.Tensor | None, precision: Precision
) -> torch.Tensor:
    """A site's output as (samples, width) rows on ``grid``; means and pools are summed in
    float64, whatever the model's dtype."""
    if info.layout == "nc":
        return t
    if info.layout in TOKEN_LAYOUTS:
        if info.layout == "lnc":  # sequence-first: read as (N, L, C), a view
            t = t.transpose(0, 1)
        if mask is not None and tuple(mask.shape) != tuple(t.shape[:2]):
            raise ValueError(
                f"site {info.label!r} of {info.which} has {tuple(t.shape[:2])} (batch, tokens) "
                f"but the mask is {tuple(mask.shape)}"
            )
        if info.tokens == "samples" and grid != ():
            return t.reshape(-1, t.shape[2]) if mask is None else t[mask]
        mode = "mean" if info.tokens == "samples" else info.tokens
        return sample_rows(t, "nlc", mode, mask, info.label, precision)
    x = t if info.layout[1] == "c" else t.movedim(-1, 1)  # channels first
    if grid == ():
        return mean_over(x.reshape(x.shape[0], x.shape[1], -1), (2,), precision)
    if tuple(x.shape[2:]) != grid:
        x = _pool(x, grid, precision)
    return x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2).reshape(-1, x.shape[1])


class _GridGram:
    """The kept blocks of the Gram over the sites of both models that some pair needs on this
    grid (each site's own block, and A's sites against B's: ``nsm.torch.site_blocks``), and
    with ``baseline`` the shifted-batch baseline's (batch i of A against batch i-1 of B, as
    :func:`nsm.torch.compare`'s; without jackknife groups, as there)."""

    def __init__(
        self,
        grid: Grid,
        sites_a: list[_SiteInfo],
        sites_b: list[_SiteInfo],
        device: torch.device,
        precision: Precision,
        groups: int | None = None,
        baseline: bool = False,
    ) -> None:
        self.grid, self.sites_a, self.sites_b = grid, sites_a, sites_b
        self.offsets: dict[tuple[str, str], tuple[int, int]] = {}
        start = 0
        for info in sites_a + sites_b:
            self.offsets[(info.which, info.label)] = (start, start + info.width)
            start += info.width
        self.widths = ([i.width for i in sites_a], [i.width for i in sites_b])
        self.groups, self.precision = groups, precision
        self.blocks = SiteBlocks(*self.widths, device, precision, groups)
        # The rows given to the baseline are concatenations, new tensors: no copy is needed.
        self.base = (
            ShiftedBaseline(SiteBlocks(*self.widths, device, precision), copy=False) if baseline else None
        )
        self._results: dict[bool, KeptBlocks] = {}
        self._shared: SharedCentering | None = None
        # Pairs are read from several threads (CrossComparison computes pairs side by side):
        # what is made once on the first read is made under this lock.
        self._lock = threading.Lock()

    def nbytes(self) -> int:
        # The sums and their copy on the host, for the pairs and for the baseline.
        pairs = SiteBlocks.nbytes(*self.widths, self.groups)
        return 2 * (pairs + (0 if self.base is None else SiteBlocks.nbytes(*self.widths)))

    @property
    def n_samples(self) -> int:
        return self.blocks.n_samples

    def update(
        self,
        values_a: dict[str, torch.Tensor],
        values_b: dict[str, torch.Tensor],
        masks: dict[tuple[str, str], torch.Tensor | None],
    ) -> None:
        """Add a batch: the sites' outputs by label, and the token sites' masks by (model, label)."""
        xs = [
            _to_grid(values_a[i.label], i, self.grid, masks.get((i.which, i.label)), self.precision)
            for i in self.sites_a
        ]
        ys = [
            _to_grid(values_b[i.label], i, self.grid, masks.get((i.which, i.label)), self.precision)
            for i in self.sites_b
        ]
        rows = {r.shape[0] for r in xs + ys}
        if len(rows) != 1:
            raise ValueError(
                f"sites on the grid {self.grid} give different numbers of samples: {sorted(rows)}"
            )
        x, y = torch.cat(xs, dim=1), torch.cat(ys, dim=1)
        self.blocks.update(x, y)
        if self.base is not None:
            self.base.update(x, y)

    def finish(self) -> None:
        """Streaming is over: add what was gathered (bad values raise here, not when read)."""
        self.blocks.finish()
        if self.base is not None:
            assert isinstance(self.base.acc, SiteBlocks)
            self.base.acc.finish()

    def pair(self, a: _SiteInfo, b: _SiteInfo, baseline: bool = False) -> Gram | None:
        """The pair's Gram assembled from the grid's blocks (with ``baseline``: the baseline's,
        None when there is none or it has no samples, as after one batch)."""
        if baseline and self.base is None:
            return None
        kept = self._result(baseline)
        if baseline and kept.n_samples == 0:
            return None
        return kept.pair_gram(self.offsets[("model_a", a.label)], self.offsets[("model_b", b.label)])

    def shared(self, a: _SiteInfo, b: _SiteInfo) -> SharedBlock:
        """The grid's :class:`nsm.measures.SharedCentering` (made once) and the pair's ranges."""
        kept = self._result(False)
        with self._lock:
            if self._shared is None:
                self._shared = SharedCentering(kept)
            return self._shared, self.offsets[("model_a", a.label)], self.offsets[("model_b", b.label)]

    def _result(self, baseline: bool) -> KeptBlocks:
        """The grid's blocks (or its baseline's) on the host, made once when first read:
        streaming is over by then."""
        with self._lock:
            if baseline not in self._results:
                acc = self.base.acc if baseline and self.base is not None else self.blocks
                assert isinstance(acc, SiteBlocks)
                self._results[baseline] = acc.result()
            return self._results[baseline]


class PairGrams(SharedGrams):
    """``{(site_a, site_b): Gram or None}``, assembled from the grids' blocks each time a pair is read
    (None: the pair could not share samples; ``reasons`` says why). Nothing is kept per pair,
    so the memory is that of the grid Grams whatever the number of pairs. With ``baseline``,
    the baselines' Grams of the compared pairs (None where there is no baseline)."""

    def __init__(
        self,
        pairs: dict[tuple[str, str], tuple[_GridGram | None, _SiteInfo, _SiteInfo]],
        reasons: dict[tuple[str, str], str],
        baseline: bool = False,
    ) -> None:
        self.reasons, self.baseline = reasons, baseline
        self._pairs = {k: v for k, v in pairs.items() if v[0] is not None} if baseline else pairs

    def __getitem__(self, key: tuple[str, str]) -> Gram | None:
        grid, a, b = self._pairs[key]
        return None if grid is None else grid.pair(a, b, self.baseline)

    def shared_block(self, pair: tuple[str, str]) -> SharedBlock | None:
        grid, a, b = self._pairs[pair]
        if grid is None or self.baseline or grid.n_samples == 0:
            return None  # the pair's own Gram: it says why there is nothing to measure
        return grid.shared(a, b)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


def compare_all(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable[Any] | torch.Tensor,
    layers_a: Any,
    layers_b: Any = None,
    *,
    samples: str = "pool",
    eps: Any = None,
    device: Any = None,
    max_batches: int | None = None,
    layout: PerSite = None,
    tokens: PerSite = "samples",
    mask: MaskSpec = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
    baseline: bool = True,
    precision: Precision = DEFAULT_PRECISION,
    centered: bool = False,
    groups: int | None = None,
    clone: bool | Sequence[str] = False,
    output: OutputArg = None,
    engine: Engine = "auto",
    count_dead: bool = True,
) -> CrossComparison:
    """Every site of model A against every site of model B, streaming the data once.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two networks (as for :func:`nsm.torch.compare`).
    data : iterable of batches, or one tensor
        As for :func:`nsm.torch.compare`.
    layers_a, layers_b : site names, a module type or a predicate
        The sites of each model (``layers_b=None``: the same selection in model B).
    samples : {'pool', 'inputs'}
        ``"pool"``: a pair's finer spatial map is average-pooled to the coarser grid ((input,
        coarse position) pairs are samples; a token site pairs only with token sites of the same
        length or with sites of one vector per input). ``"inputs"``: every site becomes one vector
        per input (mean over positions and real tokens).
    eps : float or sequence of floats, optional
        The ε values of the pairs' summary (default: nsm's).
    device, max_batches, layout, tokens, mask, progress
        As for :func:`nsm.torch.compare` (``layout``, ``tokens`` and ``mask`` per site label).
    baseline : bool
        Also accumulate the shifted-batch baseline of every pair, as :func:`nsm.torch.compare`
        does (batch i of A against batch i-1 of B, on the pair's samples): it gives
        ``matrix("similarity_gap", eps)`` and ``pair(a, b).baseline(eps)``, NaN after a single
        batch. It costs about as much again as the Grams, in time and memory.
    precision : {'mixed', 'float64'}
        As for :func:`nsm.torch.compare`.
    max_bytes : int
        Refuse to start when the Grams (with their baselines) would need more memory than this
        (default 4 GiB); the error names the total and the largest sites. With the torch
        engine the working set of the widest pair counts too (about 1.3 GiB at 3,072 + 3,072;
        the pairs take turns on the device).
    centered : bool
        The pairs' thresholds, similarity and ``match_auc`` are the centred match's (as for
        :func:`nsm.torch.compare`).
    groups : int >= 2, optional
        Jackknife error bars, as for :func:`nsm.torch.compare` (batches dealt round-robin,
        memory K + 1 times the Grams, counted in ``max_bytes``): every pair's Gram keeps its
        groups, so ``pair(a, b)`` gives intervals and ``matrix(measure, se=True)`` the
        standard errors; ``matrix(measure)`` stays the full-data values. Fewer batches than
        groups is refused before the pass when the length of ``data`` or ``max_batches`` says so.
    clone : bool or list of site names
        As for :func:`nsm.torch.compare`: copy the outputs of every site, or of the named
        ones, as the module returns them (for writes through ``.data`` or custom kernels).
    output : int, str, callable or dict, optional
        What each site's output is compared on, as for :func:`nsm.torch.compare`.
    engine : {'auto', 'core', 'torch'}
        Which engine computes the pairs' thresholds, as for :func:`nsm.torch.compare` (``"auto"``:
        the torch engine on ``device`` when it is a GPU, pairs one after another; the C++ core
        otherwise).
    count_dead : bool
        Count dead neurons in the similarity's denominator, as for :func:`nsm.torch.compare`.

    Returns
    -------
    nsm.CrossComparison

    Examples
    --------
    >>> import torch, nsm.torch
    >>> _ = torch.manual_seed(0)
    >>> def net():
    ...     return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                                torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3, padding=1),
    ...                                torch.nn.ReLU())
    >>> data = [torch.randn(16, 3, 8, 8) for _ in range(4)]
    >>> grid = nsm.torch.compare_all(net(), net(), data, torch.nn.ReLU, progress=False)
    >>> grid.sites_a
    ('1', '4')
    >>> grid.matrix("linear_cka").shape
    (2, 2)
    """
    check_choice(samples, "samples", SAMPLE_MODES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    max_batches = check_max_batches(max_batches)
    precision = check_precision(precision)
    progress = check_bool(progress, "progress")
    baseline = check_bool(baseline, "baseline")
    centered = check_bool(centered, "centered")
    count_dead = check_bool(count_dead, "count_dead")
    engine = cast(Engine, check_engine(engine, None)[0])
    groups = check_groups(groups)
    layouts = _PerSite(check_per_site(layout, "layout", LAYOUTS), "layout")
    modes = _PerSite(check_per_site(tokens, "tokens", TOKEN_MODES), "tokens")
    mask = check_mask(mask)
    masks = MaskRule(mask, model_a, model_b)
    cloned = check_clone(clone)
    outputs = check_output(output)
    sel_a = ModelSelection(model_a, layers_a, "model_a")
    sel_b = ModelSelection(model_b, layers_a if layers_b is None else layers_b, "model_b")
    device = comparison_device(model_a, model_b, device)
    grids: list[_GridGram] | None = None
    infos: tuple[list[_SiteInfo], list[_SiteInfo]] = ([], [])
    pairs: dict[tuple[str, str], tuple[_GridGram | None, _SiteInfo, _SiteInfo]] = {}
    reasons: dict[tuple[str, str], str] = {}
    stream = Stream(
        model_a,
        model_b,
        data,
        (sel_a.watch, sel_b.watch),
        device=device,
        mask=mask if callable(mask) else None,
        max_batches=max_batches,
        progress=progress,
        label="nsm compare_all",
        clone=cloned,
        output=outputs,
    )
    check_groups_fit(groups, stream)
    with stream:
        for fed in stream:
            tap_a, tap_b = fed.tap_a, fed.tap_b
            if grids is None:
                infos = (
                    _infos(sel_a, tap_a, layouts, modes, masks),
                    _infos(sel_b, tap_b, layouts, modes, masks),
                )
                layouts.check_used()
                modes.check_used()
                masks.check_used()
                check_clone_used(cloned, [i.site for i in infos[0] + infos[1]])
                check_output_used(outputs, [i.site for i in infos[0] + infos[1]])
                grids = _plan_grids(infos, samples, device, pairs, reasons, precision, groups, baseline)
                _check_memory(grids, max_bytes, choose_engine(engine, device))
            values_a = {i.label: tap_a.value(i.site.module, i.site.index) for i in infos[0]}
            values_b = {i.label: tap_b.value(i.site.module, i.site.index) for i in infos[1]}
            for info in infos[0] + infos[1]:
                values = values_a if info.which == "model_a" else values_b
                value = values[info.label]
                check_batch_axis(value, info.layout, fed.inputs, info.label, info.which, fed.number)
            real = {
                (i.which, i.label): masks.of(i.mask, fed.batch, fed.number, i.label, i.which)
                for i in infos[0] + infos[1]
                if i.layout in TOKEN_LAYOUTS
            }
            for g in grids:
                g.update(values_a, values_b, real)
    if grids is None:
        raise ValueError("data gave no batch")
    for g in grids:
        g.finish()
    kwargs = {} if eps is None else {"eps": eps}
    return CrossComparison(
        [i.label for i in infos[0]],
        [i.label for i in infos[1]],
        PairGrams(pairs, reasons),
        reasons=reasons,
        baselines=PairGrams(pairs, reasons, baseline=True) if baseline else None,
        centered=centered,
        count_dead=count_dead,
        info={"samples": samples, "precision": precision},
        engine=cast(Engine, choose_engine(engine, device)),
        device=None if engine == "core" else device,
        **kwargs,
    )


def _infos(
    selection: ModelSelection, tap: Tap, layouts: _PerSite, modes: _PerSite, masks: MaskRule
) -> list[_SiteInfo]:
    out = []
    for site in selection.resolve(tap.calls(), tap.order):
        fake = SitePair(site.label, site, site)
        layout = _layout_of(tap, site, layouts.get(fake, site), tap.which)
        mode = modes.get(fake, site) or "samples"
        shape = tuple(tap.value(site.module, site.index).shape)
        out.append(_SiteInfo(site, tap.which, layout, mode, shape, masks.source(tap.which, site)))
    return out


def _plan_grids(
    infos: tuple[list[_SiteInfo], list[_SiteInfo]],
    samples: str,
    device: torch.device,
    pairs: dict,
    reasons: dict,
    precision: Precision,
    groups: int | None = None,
    baseline: bool = False,
) -> list[_GridGram]:
    needed: dict[Grid, tuple[dict[str, _SiteInfo], dict[str, _SiteInfo]]] = {}
    where: dict[tuple[str, str], Grid | None] = {}
    for a in infos[0]:
        for b in infos[1]:
            grid, why = ((), "") if samples == "inputs" else _common_grid(a.grid, b.grid)
            where[(a.label, b.label)] = grid
            if grid is None:
                reasons[(a.label, b.label)] = why
                continue
            sa, sb = needed.setdefault(grid, ({}, {}))
            sa[a.label], sb[b.label] = a, b
    grams = {
        grid: _GridGram(grid, list(sa.values()), list(sb.values()), device, precision, groups, baseline)
        for grid, (sa, sb) in needed.items()
    }
    for a in infos[0]:
        for b in infos[1]:
            grid = where[(a.label, b.label)]
            pairs[(a.label, b.label)] = (None if grid is None else grams[grid], a, b)
    return list(grams.values())


def _check_memory(grids: list[_GridGram], max_bytes: int, engine: str = "core") -> None:
    """Refuses a grid whose Grams, and with the torch engine the working set of its widest
    pair (the pairs take turns on the device), would need more than ``max_bytes``."""
    grams = sum(g.nbytes() for g in grids)
    peel = 0
    if engine == "torch":
        from ..match._torch_engine import working_set_bytes

        peel = max(
            (
                working_set_bytes(max(i.width for i in g.sites_a), max(i.width for i in g.sites_b))
                for g in grids
            ),
            default=0,
        )
    total = grams + peel
    if total <= max_bytes:
        return
    widest = sorted({(-i.width, i.which, i.label) for g in grids for i in g.sites_a + g.sites_b})
    largest = ", ".join(f"{label!r} of {which} ({-width})" for width, which, label in widest[:4])
    baseline = " (with their baselines)" if any(g.base is not None for g in grids) else ""
    engine_part = f" and the torch engine's working set of the widest pair ({_size(peel)})" if peel else ""
    raise ValueError(
        f"the Grams of every pair{baseline}{engine_part} would take {_size(total)}, over max_bytes = "
        f"{_size(max_bytes)}; the widest sites are {largest}: select fewer sites, "
        f"use samples='inputs', {'pass baseline=False, ' if baseline else ''}or raise max_bytes"
    )


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.2f} MiB" if n >= 2**18 else f"{n} bytes"
