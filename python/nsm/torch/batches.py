"""Batches: moving them to the device, feeding them to a model, and their padding masks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

import torch
from torch import nn

from .masks import as_mask

__all__ = [
    "as_batches",
    "batch_mask",
    "copy_inputs",
    "feed",
    "fed_tensors",
    "inputs_in",
    "known_length",
    "move",
]


def as_batches(data: Any) -> Iterable[Any]:
    """``data`` as an iterable of batches: a bare tensor or a dict is one batch."""
    if isinstance(data, (torch.Tensor, Mapping)):
        return [data]
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an iterable of batches (a DataLoader, a list) or one tensor, "
            f"got {type(data).__name__}"
        )
    return data


def known_length(batches: Iterable[Any], max_batches: int | None = None) -> int | None:
    """How many batches a pass over ``batches`` gives at most, when that is known: ``len`` where
    the iterable has one (a DataLoader over an IterableDataset defines ``__len__`` but raises
    TypeError), capped by ``max_batches``; None when neither says. A hint only (the progress
    bar's total, the groups check): the pass streams whatever the iterable gives."""
    try:
        length: int | None = len(batches)  # type: ignore[arg-type]
    except TypeError:
        length = None
    if max_batches is not None:
        return max_batches if length is None else min(length, max_batches)
    return length


def move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(move(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(v, device) for v in batch)
    return batch


def feed(model: nn.Module, batch: Any) -> None:
    """Run a model on a batch: a tensor, a tuple or list (its first item is the input, the
    rest labels), or a dict of keyword arguments."""
    if isinstance(batch, torch.Tensor):
        model(batch)
    elif isinstance(batch, Mapping):
        model(**batch)
    elif isinstance(batch, (tuple, list)) and batch:
        model(batch[0])
    else:
        raise TypeError(
            f"cannot feed a batch of type {type(batch).__name__} to a model; use "
            "tensors, (input, label) tuples or dicts of keyword arguments"
        )


def _fed(batch: Any) -> Any:
    """The part of a batch that ``feed`` gives the model."""
    if isinstance(batch, (tuple, list)) and not isinstance(batch, Mapping) and batch:
        return batch[0]
    return batch


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in _tensors(v)]
    return []


def fed_tensors(batch: Any) -> list[torch.Tensor]:
    """The tensors ``feed`` gives the model (nested in dicts, tuples and lists too)."""
    return _tensors(_fed(batch))


def _copied(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, Mapping):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(_copied(v) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_copied(v) for v in obj)
    return obj


def copy_inputs(batch: Any) -> Any:
    """The batch with a copy of every tensor that ``feed`` gives the model (labels are not fed
    and are not copied), for a model that writes into its input."""
    if isinstance(batch, (tuple, list)) and not isinstance(batch, Mapping) and batch:
        rest = list(batch[1:])
        items = [_copied(batch[0]), *rest]
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    return _copied(batch)


def inputs_in(batch: Any) -> int | None:
    """The batch's number of inputs: the leading size most of the fed tensors share (the first
    such tensor's on a tie), or None when no tensor with a leading axis is fed."""
    sizes = [t.shape[0] for t in fed_tensors(batch) if t.ndim >= 1]
    if not sizes:
        return None
    return max(dict.fromkeys(sizes), key=sizes.count)


def batch_mask(batch: Any, mask: Callable[[Any], Any] | None, number: int) -> torch.Tensor | None:
    """The (N, L) bool mask of real tokens: ``mask(batch)`` when given, else the batch's
    ``"attention_mask"`` when it is a dict (the Hugging Face convention), else None."""
    if mask is not None:
        m = mask(batch)
        where = "mask(batch)"
    elif isinstance(batch, Mapping) and batch.get("attention_mask") is not None:
        m = batch["attention_mask"]
        where = "the batch's attention_mask"
    else:
        return None
    return as_mask(m, where, number)
