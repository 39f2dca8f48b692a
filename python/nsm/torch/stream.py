"""Streaming batches through two models: the loop that compare and compare_all share."""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from .._progress import progress_bar
from .batches import as_batches, batch_mask, copy_inputs, fed_tensors, feed, inputs_in, known_length, move
from .capture import Clone, OutputSpec, Tap
from .sites import unwrap

__all__ = ["Fed", "Stream", "check_groups_fit", "comparison_device"]


class Fed(NamedTuple):
    """One batch after both forward passes: its number, both models' taps, the batch as both
    models were given it (on the device, unchanged), its (N, L) mask of real tokens when one
    mask is given for every site or the batch has an attention_mask (or None), and its number
    of inputs (None when no tensor with a leading axis was fed)."""

    number: int
    tap_a: Tap
    tap_b: Tap
    batch: Any
    mask: torch.Tensor | None
    inputs: int | None


class _Feeder:
    """Feeds one model its batches. The first batch is given as a copy, and the version
    counters of the copy's tensors say whether the model writes into its input (``x /= 2`` in
    its forward): a model that does gets a copy of every batch (of its fed tensors, not the
    labels), so the other model, a re-run and the caller's data see the batch unchanged; one
    that does not gets each batch itself."""

    def __init__(self, root: nn.Module, which: str) -> None:
        self.root, self.which = root, which
        self.writes: bool | None = None

    def forward(self, batch: Any, number: int) -> Callable[[], None]:
        def run() -> None:
            given = batch if self.writes is False else copy_inputs(batch)
            tensors = fed_tensors(given)
            before = [t._version for t in tensors]
            feed(self.root, given)
            moved = any(t._version != v for t, v in zip(tensors, before))
            if moved and given is batch:
                raise ValueError(
                    f"{self.which} wrote into its input in batch {number} (the version counter "
                    "of a tensor it was given moved) but not in the first batch, so it was given "
                    "the batch itself, which has now changed: the other model would see other "
                    "inputs. Make the model write into a new tensor (x = x / 2, not x /= 2)"
                )
            if self.writes is None or moved:
                self.writes = moved

        return run


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def comparison_device(model_a: nn.Module, model_b: nn.Module, device: Any) -> torch.device:
    """Where the comparison runs (default: model_a's device); both models must be there."""
    device = torch.device(device) if device is not None else _model_device(model_a)
    for which, model in (("model_a", model_a), ("model_b", model_b)):
        d = _model_device(model)
        other_index = d.index is not None and device.index is not None and d.index != device.index
        if d.type != device.type or other_index:
            raise ValueError(f"{which} is on {d} but the comparison runs on {device}; move it there")
    return device


def check_groups_fit(groups: int | None, stream: Stream) -> None:
    """Refuses ``groups=K`` before the pass when the stream is known to give fewer than K
    batches (its length, or ``max_batches``): a group would get no batch, and its standard
    errors could not be had. An unsized stream is checked when it ends, by the caller."""
    if groups is None or stream.length is None or stream.length >= groups:
        return
    n = stream.length
    fewer = f"groups={n} or fewer" if n >= 2 else "groups=None (no error bars)"
    if stream.max_batches is not None and stream.max_batches == n:
        raise ValueError(
            f"groups={groups} needs at least {groups} batches (one per group), but max_batches={n} "
            f"stops after {n}: pass max_batches={groups} or more, or {fewer}"
        )
    raise ValueError(
        f"groups={groups} needs at least {groups} batches (one per group), but data has {n} "
        f"batch{'es' if n != 1 else ''}: pass {fewer}, or more batches"
    )


def _check_calls(tap: Tap, expected: dict[str, int], number: int) -> None:
    calls = tap.calls()
    for module in set(calls) | set(expected):
        got, want = calls.get(module, 0), expected.get(module, 0)
        if got != want:
            raise ValueError(
                f"module {module!r} of {tap.which} ran {got} time{'s' if got != 1 else ''} in batch "
                f"{number} but {want} in the first batch: nsm compares the same sites in every batch "
                "and never reuses an earlier batch's activations; select sites that run in every "
                "batch"
            )


class Stream:
    """Both models in eval mode under ``torch.no_grad()``, hooked on the watched modules.

    Iterating gives a :class:`Fed` for each batch, after both forward passes.
    The first batch's taps also infer each call's layout; later batches hook the watched
    modules only, and must call each of them as often as the first batch did. On exit the hooks
    are removed and every module gets back the mode it had (also after an exception).
    """

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module,
        data: Any,
        watch: tuple[list[str], list[str]],
        *,
        device: torch.device,
        mask: Callable[[Any], torch.Tensor] | None,
        max_batches: int | None,
        progress: bool,
        label: str,
        clone: Clone = False,
        output: dict[tuple[str, int | None], OutputSpec] | None = None,
    ) -> None:
        self.roots = (unwrap(model_a), unwrap(model_b))
        self.watch = watch
        self.device, self.mask, self.max_batches = device, mask, max_batches
        self.batches = as_batches(data)
        total = known_length(self.batches, max_batches)
        self.length = total  # at most this many batches, when known
        self._saved = [(m, m.training) for root in self.roots for m in root.modules()]
        self.forced, self.output = clone, output
        self.taps = (
            Tap(self.roots[0], "model_a", watch[0], discover=True, forced=clone, output=output),
            Tap(self.roots[1], "model_b", watch[1], discover=True, forced=clone, output=output),
        )
        self.feeders = (_Feeder(self.roots[0], "model_a"), _Feeder(self.roots[1], "model_b"))
        self._bar = progress_bar(total, progress, label, "batch")
        self._batches: Generator[Fed, None, None] | None = None

    def __enter__(self) -> Stream:
        for root in self.roots:
            root.eval()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._batches is not None:  # leave torch.no_grad() now, not when collected
            self._batches.close()
        self._bar.close()
        for tap in self.taps:
            tap.remove()
        for m, training in self._saved:
            m.training = training

    def __iter__(self) -> Iterator[Fed]:
        self._batches = self._run()
        return self._batches

    def _run(self) -> Generator[Fed, None, None]:
        first: tuple[dict[str, int], dict[str, int]] | None = None
        with torch.no_grad():
            # islice stops at max_batches without fetching one more: an iterator the caller
            # goes on reading from loses nothing.
            for number, batch in enumerate(itertools.islice(self.batches, self.max_batches)):
                batch = move(batch, self.device)
                real = batch_mask(batch, self.mask, number)
                # The mask is (N, L) by definition; else the fed tensors' leading size.
                inputs = real.shape[0] if real is not None else inputs_in(batch)
                for tap, feeder in zip(self.taps, self.feeders):
                    tap.run(feeder.forward(batch, number))
                self._rerun_overwritten(batch, number)
                if first is not None:
                    for tap, calls in zip(self.taps, first):
                        _check_calls(tap, calls, number)
                yield Fed(number, self.taps[0], self.taps[1], batch, real, inputs)
                if first is None:
                    first = (self.taps[0].calls(), self.taps[1].calls())
                    self.taps = (self._lean(0), self._lean(1))
                self._bar.update(1)

    def _rerun_overwritten(self, batch: Any, number: int) -> None:
        """Model B's forward pass may overwrite what model A's sites returned (a model compared
        with itself, shared modules, a module that returns a buffer of its own): a model whose
        outputs moved runs again with those outputs cloned (and so in later batches)."""
        for attempt in range(3):  # with both models' moved outputs cloned, nothing moves
            stale = [(tap, feeder, tap.overwritten()) for tap, feeder in zip(self.taps, self.feeders)]
            stale = [s for s in stale if s[2]]
            if not stale:
                return
            if attempt == 2:
                break
            for tap, feeder, moved in stale:
                tap.clone.update(moved)
                tap.run(feeder.forward(batch, number))
        raise RuntimeError(f"the outputs of model_a and model_b overwrite each other in batch {number}")

    def _lean(self, i: int) -> Tap:
        """Later batches need no layout inference: hook the watched modules only."""
        old = self.taps[i]
        old.remove()
        tap = Tap(
            self.roots[i], old.which, self.watch[i], discover=False, forced=self.forced, output=self.output
        )
        tap.clone = set(old.clone)
        return tap
