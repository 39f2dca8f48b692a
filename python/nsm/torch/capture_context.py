"""nsm.torch.capture: the hooks of compare, for looking at what a forward pass gives."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .capture import Tap
from .sites import LayerSpec, Selection, unwrap

__all__ = ["Capture", "capture"]


class Capture:
    """The outputs of the selected modules in the last forward pass of each model, by site
    label (``"name"``, or ``"name#i"`` for a module that ran several times)."""

    def __init__(self, tap_a: Tap, tap_b: Tap) -> None:
        self._taps = (tap_a, tap_b)

    @property
    def a(self) -> dict[str, torch.Tensor]:
        return self._taps[0].by_label()

    @property
    def b(self) -> dict[str, torch.Tensor]:
        return self._taps[1].by_label()


@contextlib.contextmanager
def capture(model_a: nn.Module, model_b: nn.Module, layers: LayerSpec) -> Iterator[Capture]:
    """Forward hooks on the selected modules of two models, removed on exit (also after an
    exception). Inside, both models are in eval mode; on exit every module gets back the mode
    it had. Each forward pass of a model replaces what was seen of it; values are copies, so
    later in-place operations do not change them.

    Examples
    --------
    >>> import torch, nsm.torch
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(inplace=True))
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
    >>> with nsm.torch.capture(a, b, ["0", "1"]) as seen, torch.no_grad():
    ...     _ = a(-torch.ones(3, 4)), b(torch.ones(3, 4))
    >>> seen.a["1"].shape, seen.b["1"].shape
    (torch.Size([3, 8]), torch.Size([3, 6]))
    >>> bool((seen.a["0"] < 0).any())  # Linear's output before the in-place ReLU
    True
    """
    selection = Selection(model_a, model_b, layers)
    root_a, root_b = unwrap(model_a), unwrap(model_b)
    saved = [(m, m.training) for root in (root_a, root_b) for m in root.modules()]
    taps = []
    try:
        for root, which, watch in (
            (root_a, "model_a", selection.watch_a),
            (root_b, "model_b", selection.watch_b),
        ):
            tap = Tap(root, which, watch, discover=False, clone_all=True)
            taps.append(tap)
            # each forward pass of the model starts afresh
            tap.handles.append(root.register_forward_pre_hook(lambda m, i, tap=tap: tap.reset()))
        root_a.eval()
        root_b.eval()
        yield Capture(*taps)
    finally:
        for tap in taps:
            tap.remove()
        for m, training in saved:
            m.training = training
