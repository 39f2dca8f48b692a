"""Forward hooks that record what each watched module returned, call by call, in one forward.

The value kept for a call is the module's output at the moment the module returned, whatever
in-place operation follows (``ReLU(inplace=True)``, ``out += identity``): outputs are kept by
reference, and a tensor whose version counter moved before it was read is recaptured by
running the forward again with that call's output cloned (``Tap.run``), so only outputs that
are really overwritten are ever copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable, Union

import torch
from torch import nn

from .layout import Provenance, infer_layout
from .sites import Site, _parse_site, model_modules, site_label, unwrap

__all__ = [
    "OutputSpec",
    "Tap",
    "check_clone",
    "check_clone_used",
    "check_output",
    "check_output_used",
    "first_tensor",
]

Clone = Union[bool, frozenset[tuple[str, Union[int, None]]]]


def check_clone(clone: Any) -> Clone:
    """``clone=`` as the taps read it: True or False for every site, or the named sites
    (``"name"`` for every call of a module, ``"name#i"`` for one call)."""
    if isinstance(clone, bool):
        return clone
    if isinstance(clone, str):
        clone = [clone]
    if not isinstance(clone, (list, tuple, set, frozenset)) or not all(isinstance(c, str) for c in clone):
        raise TypeError(f"clone must be True, False or a list of site names, got {clone!r}")
    return frozenset(_parse_site(c, "clone") for c in clone)


def check_clone_used(clone: Clone, sites: Iterable[Site]) -> None:
    """Every site that ``clone`` names must be a selected site of model A or model B."""
    if isinstance(clone, bool):
        return
    sites = list(sites)
    unused = sorted(
        site_label(n, i, 2) if i is not None else n
        for n, i in clone
        if not any(s.module == n and i in (None, s.index) for s in sites)
    )
    if unused:
        raise ValueError(f"clone names {unused!r}, which no selected site is")


OutputSpec = Union[int, str, Callable[[Any], Any]]


def check_output(output: Any) -> dict[tuple[str, int | None], OutputSpec]:
    """``output=`` as the taps read it: ``{(module, index or None): spec}``; a single spec
    applies to every site (key ``("", None)``)."""
    if output is None:
        return {}
    if not isinstance(output, Mapping):
        return {("", None): _check_output_spec(output, "output")}
    out = {}
    for key, spec in output.items():
        if not isinstance(key, str):
            raise TypeError(f"output's keys must be site names, got {key!r}")
        out[_parse_site(key, "output")] = _check_output_spec(spec, f"output[{key!r}]")
    return out


def check_output_used(specs: dict[tuple[str, int | None], OutputSpec], sites: Iterable[Site]) -> None:
    """Every site that ``output=`` names must be a selected site of model A or model B."""
    sites = list(sites)
    unused = sorted(
        site_label(n, i, 2) if i is not None else n
        for n, i in specs
        if n and not any(s.module == n and i in (None, s.index) for s in sites)
    )
    if unused:
        raise ValueError(f"output names {unused!r}, which no selected site is")


def _check_output_spec(spec: Any, name: str) -> OutputSpec:
    if isinstance(spec, bool) or not (isinstance(spec, (int, str)) or callable(spec)):
        raise TypeError(
            f"{name} must be an index into a tuple output, a key (or attribute) of a dict or "
            f"ModelOutput, or a callable output -> tensor, got {spec!r}"
        )
    return spec


def output_spec(
    specs: dict[tuple[str, int | None], OutputSpec], module: str, index: int
) -> OutputSpec | None:
    """The ``output=`` entry of one call of a module, or None (the default)."""
    for key in ((module, index), (module, None), ("", None)):
        if key in specs:
            return specs[key]
    return None


def describe_output(spec: OutputSpec) -> str:
    """How the table names a non-default output."""
    if callable(spec):
        return f"output {getattr(spec, '__name__', type(spec).__name__)}()"
    return f"output [{spec!r}]"


def pick_output(output: Any, spec: OutputSpec, site: str) -> torch.Tensor:
    """The tensor ``output=`` selects from a module's output."""
    try:
        if callable(spec):
            t = spec(output)
        elif isinstance(spec, int):
            t = output[spec] if isinstance(output, (tuple, list)) else None
        elif isinstance(output, Mapping):
            t = output.get(spec)
        else:
            t = getattr(output, spec, None)
    except (IndexError, KeyError) as exc:
        raise ValueError(f"output= for site {site!r}: {type(output).__name__} has no item {spec!r}") from exc
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"output= for site {site!r} selects {type(t).__name__} from the module's "
            f"{type(output).__name__} output; it must select a tensor"
        )
    return t


def several_tensors(output: Any) -> int:
    """How many tensors a tuple or list output holds at its top level (0 otherwise)."""
    if isinstance(output, (tuple, list)):
        return sum(isinstance(o, torch.Tensor) for o in output)
    return 0


def first_tensor(output: Any, module: str) -> torch.Tensor:
    """The activation tensor in a module's output."""
    if isinstance(output, torch.Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)  # Hugging Face ModelOutput
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(output, Mapping) and isinstance(output.get("last_hidden_state"), torch.Tensor):
        return output["last_hidden_state"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"module {module!r} returned {type(output).__name__}; nsm needs a tensor, a "
        "tuple or list whose first item is one, or an output with last_hidden_state"
    )


class Tap:
    """Hooks on one model: the outputs of the watched modules in the current forward pass.

    ``discover`` also hooks every module, to count calls and infer each call's layout (needed
    for the first batch only). ``clone_all`` copies every watched output at once (for callers
    that cannot run a forward twice); ``forced`` copies the outputs of the named calls
    (``(module, index)``, index None for every call of the module; True for every watched
    output): for writes the version counter does not see, through ``.data`` or a custom kernel.
    """

    def __init__(
        self,
        model: nn.Module,
        which: str,
        watch: list[str],
        discover: bool,
        clone_all: bool = False,
        forced: Clone = frozenset(),
        output: dict[tuple[str, int | None], OutputSpec] | None = None,
    ) -> None:
        self.which = which
        self.root = unwrap(model)
        self.watch = set(watch)
        self.clone_all = clone_all
        self.forced = forced
        self.output_specs = output or {}
        # (module, index) -> how the compared tensor was picked, where the table should say
        # (a non-default output=, or item 0 of a tuple of several tensors)
        self.picked: dict[tuple[str, int], str] = {}
        self.clone: set[tuple[str, int]] = set()
        self.provenance = Provenance() if discover else None
        # Only this model's forward passes count: the other model may share modules with it
        # (or be the same model, to check that it matches itself).
        self.active = clone_all
        self.handles: list[Any] = []
        self.reset()
        for name, module in model_modules(self.root).items():
            if name in self.watch or discover:
                self.handles.append(module.register_forward_hook(self._hook(name)))

    def reset(self) -> None:
        """Forget the last forward pass."""
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.versions: dict[str, list[int]] = {}
        self.layouts: dict[tuple[str, int], str | None] = {}
        self.order: list[tuple[str, int]] = []
        if self.provenance is not None:
            self.provenance.clear()

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if not self.active:
                return
            watched = name in self.watch
            if not watched and self.provenance is None:
                return
            index = len(self.outputs.get(name, ()))
            spec = output_spec(self.output_specs, name, index) if watched else None
            try:
                t = first_tensor(output, name) if spec is None else pick_output(output, spec, name)
            except TypeError:
                if watched:
                    raise
                return
            if watched:
                if spec is not None:
                    self.picked[(name, index)] = describe_output(spec)
                elif several_tensors(output) > 1:
                    self.picked[(name, index)] = f"output [0] of {several_tensors(output)}"
            if self.provenance is not None:
                # A non-default output is not what the module's type describes.
                layout = infer_layout(module if spec is None else None, inputs, t, self.provenance, name)
                self.provenance.record(t, layout)
                if watched:
                    self.layouts[(name, index)] = layout
            if not watched:
                return
            t = t.detach()
            if self.clone_all or (name, index) in self.clone or self._forced(name, index):
                t = t.clone()
            self.outputs.setdefault(name, []).append(t)
            self.versions.setdefault(name, []).append(t._version)
            self.order.append((name, index))

        return hook

    def _forced(self, name: str, index: int) -> bool:
        if isinstance(self.forced, bool):
            return self.forced
        return (name, index) in self.forced or (name, None) in self.forced

    def overwritten(self) -> list[tuple[str, int]]:
        """Calls whose output was modified in place after the module returned."""
        return [
            (name, i)
            for name, ts in self.outputs.items()
            for i, t in enumerate(ts)
            if t._version != self.versions[name][i]
        ]

    def _forward(self, forward: Callable[[], Any]) -> None:
        self.reset()
        self.active = True
        try:
            forward()
        finally:
            self.active = False

    def run(self, forward: Callable[[], Any]) -> None:
        """One forward pass; again, with the overwritten outputs cloned, if any was overwritten."""
        self._forward(forward)
        moved = self.overwritten()
        if moved:
            self.clone.update(moved)
            self._forward(forward)
            still = self.overwritten()
            if still:  # only a forward that differs from run to run can get here
                raise RuntimeError(
                    f"the outputs of {still} in {self.which} were overwritten in place "
                    "in two forward passes of the same batch"
                )

    def calls(self) -> dict[str, int]:
        """Watched module -> calls in the last forward pass."""
        return {name: len(ts) for name, ts in self.outputs.items()}

    def value(self, module: str, index: int) -> torch.Tensor:
        return self.outputs[module][index]

    def by_label(self) -> dict[str, torch.Tensor]:
        """Outputs of the last forward pass by site label."""
        calls = self.calls()
        return {site_label(m, i, calls[m]): self.outputs[m][i] for m, i in self.order}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
