"""Layouts: which axis of a site's output holds the neurons, and how outputs become samples.

A layout names the axes of an output: ``n`` the batch, ``c`` the neurons (channels or units),
``h``/``w``/``d``/``l`` positions. Spatial positions are samples; ``l`` in ``"nlc"`` (and in
``"lnc"``, sequence-first, as ``batch_first=False`` modules give) is a token axis, reduced by a
token mode (every real token a sample, their mean, the first or the last).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

__all__ = [
    "LAYOUTS",
    "TOKEN_LAYOUTS",
    "TOKEN_MODES",
    "Provenance",
    "check_batch_axis",
    "infer_layout",
    "mean_over",
    "n_samples",
    "reduced_dtype",
    "sample_rows",
    "to_2d",
]

LAYOUTS = ("nc", "ncl", "nlc", "lnc", "nchw", "nhwc", "ncdhw", "ndhwc")
TOKEN_LAYOUTS = ("nlc", "lnc")
TOKEN_MODES = ("samples", "mean", "cls", "last")
CHANNELS_FIRST = {3: "ncl", 4: "nchw", 5: "ncdhw"}
CHANNELS_LAST = {3: "nlc", 4: "nhwc", 5: "ndhwc"}

# Modules whose outputs are (N, C, *spatial) whatever their rank.
_CHANNELS_FIRST_TYPES = tuple(
    t
    for t in (
        nn.modules.conv._ConvNd,
        nn.modules.pooling._MaxPoolNd,
        nn.modules.pooling._AvgPoolNd,
        nn.modules.pooling._AdaptiveAvgPoolNd,
        nn.modules.pooling._AdaptiveMaxPoolNd,
        nn.modules.pooling._LPPoolNd,
        nn.modules.pooling._MaxUnpoolNd,
        nn.modules.batchnorm._BatchNorm,
        nn.modules.instancenorm._InstanceNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        nn.modules.padding._ConstantPadNd,
        nn.modules.padding._ReflectionPadNd,
        nn.modules.padding._ReplicationPadNd,
        getattr(nn.modules.padding, "_CircularPadNd", None),
        nn.Upsample,
        nn.PixelShuffle,
        nn.PixelUnshuffle,
        nn.ChannelShuffle,
    )
    if t is not None
)
# Modules whose outputs have the neurons last: (N, C), (N, L, C), (N, H, W, C)...
_CHANNELS_LAST_TYPES = tuple(
    t
    for t in (
        nn.Linear,
        nn.Bilinear,
        nn.LazyLinear,
        nn.Embedding,
        getattr(nn, "RMSNorm", None),
        nn.MultiheadAttention,
        nn.TransformerEncoderLayer,
        nn.TransformerDecoderLayer,
        nn.TransformerEncoder,
        nn.TransformerDecoder,
        nn.Transformer,
        nn.RNNBase,  # RNN, LSTM, GRU: their output (item 0), (N, L, C) or (L, N, C)
    )
    if t is not None
)

# Channels-last modules that map each vector of the last axis on its own, whatever the order
# of the leading axes: their output has the axes of their input.
_PER_VECTOR_TYPES = tuple(
    t for t in (nn.Linear, nn.LazyLinear, nn.LayerNorm, getattr(nn, "RMSNorm", None)) if t is not None
)


def _is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2's projections), a Linear with its weight transposed;
    recognised by name, so that nsm needs no import of transformers."""
    kind = type(module)
    return kind.__name__ == "Conv1D" and kind.__module__.startswith("transformers")


def _known_layout(module: nn.Module, ndim: int, site: str) -> str | None:
    """The layout a module's type decides, or None (element-wise and unknown modules)."""
    if ndim == 2:
        return "nc"
    if isinstance(module, nn.LayerNorm):
        # LayerNorm normalises the trailing dims: neurons last when it normalises one axis.
        return CHANNELS_LAST.get(ndim) if len(module.normalized_shape) == 1 else None
    if isinstance(module, _CHANNELS_FIRST_TYPES):
        return CHANNELS_FIRST.get(ndim)
    if _is_hf_conv1d(module):  # GPT-2's c_attn, c_fc...: a Linear on the last axis
        return CHANNELS_LAST.get(ndim)
    if isinstance(module, _CHANNELS_LAST_TYPES):
        batch_first = getattr(module, "batch_first", None)
        if batch_first is None and isinstance(module, (nn.TransformerEncoder, nn.TransformerDecoder)):
            batch_first = module.layers[0].self_attn.batch_first if len(module.layers) else True
        if batch_first is False and ndim == 3:
            return "lnc"  # sequence-first: (L, N, C)
        return CHANNELS_LAST.get(ndim)
    return None


class Provenance:
    """Which layout each module output of one forward pass has, looked up by tensor identity
    (weak references, so no activation is kept alive)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref, str | None, tuple[int, ...]]] = {}
        self._shapes: dict[tuple[int, ...], set[str]] = {}

    def clear(self) -> None:
        self._by_id.clear()
        self._shapes.clear()

    def record(self, t: torch.Tensor, layout: str | None) -> None:
        self._by_id[id(t)] = (weakref.ref(t), layout, tuple(t.shape))
        if layout is not None:
            self._shapes.setdefault(tuple(t.shape), set()).add(layout)

    def of(self, t: Any) -> str | None:
        if not isinstance(t, torch.Tensor):
            return None
        entry = self._by_id.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def by_shape(self, shape: tuple[int, ...]) -> str | None:
        """The layout of earlier outputs of this exact shape, when they all agree."""
        layouts = self._shapes.get(tuple(shape), set())
        return next(iter(layouts)) if len(layouts) == 1 else None


def infer_layout(
    module: nn.Module | None, inputs: tuple, output: torch.Tensor, provenance: Provenance, site: str
) -> str | None:
    """The layout of one call's output, or None when nothing decides it.

    The module's type decides for convolutions, pools, norms, Linear and attention; an
    element-wise or unknown module inherits from the module that produced its output tensor,
    else from its input when the shapes agree (ReLU after Conv1d is (N, C, L); GELU after a
    channels-last Linear is (N, H, W, C)), else from earlier outputs of the same shape.
    """
    ndim = output.ndim
    if ndim not in (2, 3, 4, 5):
        return None
    layout = "nc" if module is None and ndim == 2 else None
    if module is not None:  # None: a tensor the module's type does not describe
        layout = _known_layout(module, ndim, site)
    first = inputs[0] if inputs else None
    if layout == "nlc" and isinstance(module, _PER_VECTOR_TYPES) and provenance.of(first) == "lnc":
        return "lnc"  # a Linear or a norm on a sequence-first tensor keeps its axes
    if layout is not None:
        return layout
    produced = provenance.of(output)
    if produced is not None:
        return produced
    if isinstance(first, torch.Tensor) and tuple(first.shape) == tuple(output.shape):
        inherited = provenance.of(first)
        if inherited is not None:
            return inherited
    return provenance.by_shape(tuple(output.shape))


def check_batch_axis(
    t: torch.Tensor, layout: str, inputs: int | None, site: str, which: str, number: int
) -> None:
    """A site's batch axis (``n`` of its layout) must hold the batch's inputs, one entry each:
    its samples are paired with the other model's input by input. A site that sees part of
    the batch (a routed expert) or has folded another axis into the batch is refused."""
    if inputs is None or t.ndim != len(layout):
        return
    axis = layout.index("n")
    if t.shape[axis] != inputs:
        raise ValueError(
            f"site {site!r} of {which} gives outputs of shape {tuple(t.shape)} in batch {number}: "
            f"{t.shape[axis]} along its batch axis (layout {layout!r}) but the batch has {inputs} "
            "inputs. nsm pairs the two models' samples input by input, so a site must see every "
            "input of the batch once (a routed expert sees only some); pick another site, or "
            "pass layout= if its batch axis is another"
        )


def reduced_dtype(dtype: torch.dtype, precision: str) -> torch.dtype:
    """The dtype of a mean over tokens or positions: float64 for the float64 pass (and for
    float64 outputs); float32, the values the mixed pass multiplies, for narrower outputs under
    the mixed pass. The sums themselves always run in float64, never in the model's dtype."""
    return torch.float64 if precision == "float64" or dtype == torch.float64 else torch.float32


def mean_over(t: torch.Tensor, dims: tuple[int, ...], precision: str) -> torch.Tensor:
    """The mean of ``t`` over ``dims``, summed in float64 (``reduced_dtype`` gives the result's
    dtype)."""
    count = 1
    for d in dims:
        count *= t.shape[d]
    return (t.sum(dim=dims, dtype=torch.float64) / count).to(reduced_dtype(t.dtype, precision))


def sample_rows(
    t: torch.Tensor, layout: str, tokens: str, mask: torch.Tensor | None, site: str, precision: str
) -> torch.Tensor:
    """A site's output as samples: a (samples, neurons) matrix, or a (N, neurons, positions)
    view that nsm's Gram reads as N * positions samples without a copy. Means over tokens
    are summed in float64 (``mean_over``), whatever the model's dtype."""
    if t.ndim != len(layout):
        raise ValueError(
            f"site {site!r} gives outputs of shape {tuple(t.shape)}, which does not fit "
            f"its layout {layout!r}; pass layout= for it"
        )
    if layout == "nc":
        return t
    if layout == "lnc":  # sequence-first: read as (N, L, C), a view
        t, layout = t.transpose(0, 1), "nlc"
    if layout[1] == "c":  # channels first: (N, C, *positions)
        return t.reshape(t.shape[0], t.shape[1], -1)
    if layout != "nlc":  # channels last: (N, *positions, C) viewed as (N, C, positions)
        return t.reshape(t.shape[0], -1, t.shape[-1]).transpose(1, 2)
    if mask is not None and tuple(mask.shape) != tuple(t.shape[:2]):
        raise ValueError(
            f"site {site!r} has {tuple(t.shape[:2])} (batch, tokens) but the mask is "
            f"{tuple(mask.shape)}; pass mask={{{site!r}: lambda batch: ...}} with its own, "
            "or a layout without tokens"
        )
    if tokens == "samples":
        return t.transpose(1, 2) if mask is None else t[mask]
    if mask is not None:
        counts = mask.sum(dim=1)
        if bool((counts == 0).any()):
            row = int(torch.nonzero(counts == 0)[0, 0])
            raise ValueError(f"site {site!r}: input {row} of the batch has no unmasked token")
    if tokens == "mean":
        if mask is None:
            return mean_over(t, (1,), precision)
        total = t.masked_fill(~mask.unsqueeze(-1), 0).sum(dim=1, dtype=torch.float64)
        return (total / mask.sum(dim=1, keepdim=True)).to(reduced_dtype(t.dtype, precision))
    rows = torch.arange(t.shape[0], device=t.device)
    if tokens == "cls":
        first = torch.zeros_like(rows) if mask is None else mask.to(torch.int8).argmax(dim=1)
        return t[rows, first]
    length = t.shape[1]
    last = (
        torch.full_like(rows, length - 1)
        if mask is None
        else length - 1 - mask.flip(1).to(torch.int8).argmax(dim=1)
    )
    return t[rows, last]


def n_samples(v: torch.Tensor) -> int:
    """Samples in a sample_rows result."""
    return v.shape[0] * v.shape[2] if v.ndim == 3 else v.shape[0]


def to_2d(v: torch.Tensor) -> torch.Tensor:
    """(samples, neurons) rows of a sample_rows result."""
    return v.transpose(1, 2).reshape(-1, v.shape[1]) if v.ndim == 3 else v
