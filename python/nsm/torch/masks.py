"""Masks: which (N, L) mask of real tokens each token site reads.

A batch's ``attention_mask`` describes the tokens of the inputs it comes with. In an
encoder-decoder model (a Hugging Face model with ``config.is_encoder_decoder``, or a module with
both an ``encoder`` and a ``decoder``) it describes the encoder's tokens only: sites inside the
decoder read the batch's ``decoder_attention_mask``, and a token site elsewhere (a head after the
decoder, an embedding shared by both) needs a mask of its own from ``mask=``. ``mask=`` is one
callable for every token site, or a dict by site (label or ``(label_a, label_b)``) of callables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import nn

from .sites import Site, model_modules, unwrap

__all__ = ["MaskRule", "MaskSource", "check_mask"]

MaskSource = tuple[
    str, Any
]  # ("call", f), ("key", "attention_mask" | "decoder_attention_mask"), ("none", why)


def check_mask(mask: Any) -> Any:
    """``mask=`` as given: None, a callable, or a dict of callables by site."""
    if mask is None or callable(mask):
        return mask
    if isinstance(mask, Mapping):
        for key, value in mask.items():
            if not callable(value):
                raise TypeError(
                    f"mask[{key!r}] must be a callable mask(batch) -> (N, L) bool tensor, got {value!r}"
                )
        return dict(mask)
    raise TypeError(
        f"mask must be a callable mask(batch) -> (N, L) bool tensor or a dict of them by site, got {mask!r}"
    )


def _encoder_decoder(model: nn.Module) -> tuple[str, str] | None:
    """The names of an encoder-decoder model's encoder and decoder, or None."""
    root = unwrap(model)
    config = getattr(root, "config", None)
    encoder: Any = None
    decoder: Any = None
    get_encoder, get_decoder = getattr(root, "get_encoder", None), getattr(root, "get_decoder", None)
    if getattr(config, "is_encoder_decoder", False) and callable(get_encoder) and callable(get_decoder):
        encoder, decoder = get_encoder(), get_decoder()
    elif isinstance(getattr(root, "encoder", None), nn.Module) and isinstance(
        getattr(root, "decoder", None), nn.Module
    ):
        encoder, decoder = root.encoder, root.decoder
    if encoder is None or decoder is None or root in (encoder, decoder):
        return None
    names = {id(m): name for name, m in model_modules(root).items()}
    if id(encoder) not in names or id(decoder) not in names:
        return None
    return names[id(encoder)], names[id(decoder)]


def _under(module: str, parent: str) -> bool:
    return module == parent or module.startswith(parent + ".")


class MaskRule:
    """Where each token site's mask comes from (``source``), and the mask for a batch (``of``)."""

    def __init__(self, mask: Any, model_a: nn.Module, model_b: nn.Module) -> None:
        self.mask = mask
        self.parts = {"model_a": _encoder_decoder(model_a), "model_b": _encoder_decoder(model_b)}
        self.used: set[Any] = set()
        self._cache: tuple[int, dict[int, torch.Tensor]] | None = None

    def source(self, which: str, site: Site, key: Any = None) -> MaskSource:
        """Where the mask of ``site`` of ``which`` (compared under ``key``) comes from."""
        if isinstance(self.mask, dict):
            for k in (key, site.label):
                if k is not None and k in self.mask:
                    self.used.add(k)
                    return ("call", self.mask[k])
        elif self.mask is not None:
            return ("call", self.mask)
        parts = self.parts[which]
        if parts is None or _under(site.module, parts[0]):
            return ("key", "attention_mask")
        if _under(site.module, parts[1]):
            return ("key", "decoder_attention_mask")
        return ("none", "outside the encoder and the decoder")

    def check_used(self) -> None:
        if isinstance(self.mask, dict):
            unused = [k for k in self.mask if k not in self.used]
            if unused:
                raise ValueError(f"mask names {unused!r}, which no selected site is")

    def of(self, source: MaskSource, batch: Any, number: int, site: str, which: str) -> torch.Tensor | None:
        """The (N, L) bool mask of ``site`` in batch ``number`` (None: every token is real)."""
        kind, what = source
        if kind == "call":
            return self._called(what, batch, number, site)
        padded = isinstance(batch, Mapping) and batch.get("attention_mask") is not None
        if kind == "key" and isinstance(batch, Mapping) and batch.get(what) is not None:
            return as_mask(batch[what], f"the batch's {what}", number)
        if not padded:
            return None  # no mask at all: every token is real, in the encoder and the decoder
        where = "in the decoder" if kind == "key" else what
        missing = "the batch has no decoder_attention_mask" if kind == "key" else "it has no mask"
        raise ValueError(
            f"site {site!r} of {which} is a token site {where} of an encoder-decoder model: the "
            f"batch's attention_mask describes the encoder's tokens, and {missing}; pass "
            f"mask={{{site!r}: lambda batch: ...}} giving its (N, L) mask of real tokens"
        )

    def _called(self, f: Callable[[Any], Any], batch: Any, number: int, site: str) -> torch.Tensor:
        if self._cache is None or self._cache[0] != number:
            self._cache = (number, {})
        done = self._cache[1]
        if id(f) not in done:
            where = "mask(batch)" if not isinstance(self.mask, dict) else f"mask[{site!r}](batch)"
            done[id(f)] = as_mask(f(batch), where, number)
        return done[id(f)]


def as_mask(m: Any, where: str, number: int) -> torch.Tensor:
    """``m`` as a boolean (N, L) mask, or a ValueError naming ``where`` it came from."""
    if not isinstance(m, torch.Tensor) or m.ndim != 2:
        raise ValueError(
            f"{where} must be an (N, L) tensor, got "
            f"{tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__} "
            f"in batch {number}"
        )
    return m.bool() if m.dtype != torch.bool else m
