"""Activation sites: one call of a module in a forward pass, named and selected.

A module called once per forward is the site ``"name"``; a module called k > 1 times gives the
sites ``"name#0"`` ... ``"name#{k-1}"`` in call order. Which sites exist is only known once a
forward has run, so a selection is parsed first (which modules to watch) and resolved into
site pairs after the first batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

from torch import nn

__all__ = [
    "LayerSpec",
    "ModelSelection",
    "Selection",
    "Site",
    "SitePair",
    "model_modules",
    "site_label",
    "unwrap",
]

LayerSpec = Union[str, tuple, type, Callable[[str, nn.Module], bool], Sequence[Any]]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            inner = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            inner = model._orig_mod
        else:
            return model
        assert isinstance(inner, nn.Module)
        model = inner


def model_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Named submodules of the unwrapped model (the root itself has no name and is left out)."""
    return {name: m for name, m in unwrap(model).named_modules() if name}


def site_label(module: str, index: int, calls: int) -> str:
    """``"name"`` for a module called once per forward, ``"name#i"`` otherwise."""
    return module if calls == 1 else f"{module}#{index}"


@dataclass(frozen=True)
class Site:
    """One call of a module: the ``index``-th of ``calls`` calls of ``module`` per forward."""

    module: str
    index: int
    calls: int

    @property
    def label(self) -> str:
        return site_label(self.module, self.index, self.calls)


@dataclass(frozen=True)
class SitePair:
    """A site of model A compared with a site of model B under ``key`` (the label both share,
    or ``(label_a, label_b)``)."""

    key: Any
    a: Site
    b: Site


def _parse_site(text: str, which: str) -> tuple[str, int | None]:
    name, sep, index = text.rpartition("#")
    if not sep:
        return text, None
    if not index.isdigit() or not name:
        raise ValueError(
            f"site {text!r} of {which}: expected 'module' or 'module#i' with i a call "
            "number (0 for the first call)"
        )
    return name, int(index)


def _lookup(modules: dict[str, nn.Module], name: str, which: str) -> None:
    if name not in modules:
        known = ", ".join(list(modules)[:12]) + (", ..." if len(modules) > 12 else "")
        raise ValueError(f"layer {name!r} not found in {which}; its modules are: {known}")


class ModelSelection:
    """The sites ``layers`` selects in one model (for grids of every site against every site):
    site names (``"name"``, ``"name#i"``), a list of them, a module type or a predicate
    ``f(name, module) -> bool`` (every site of the matching modules, in call order)."""

    def __init__(self, model: nn.Module, layers: Any, which: str) -> None:
        modules = model_modules(model)
        self.which = which
        self.spec = layers
        self.names: list[tuple[str, int | None]] | None = None
        if isinstance(layers, type) or (callable(layers) and not isinstance(layers, (str, tuple, list))):
            pick = (lambda name, m: isinstance(m, layers)) if isinstance(layers, type) else layers
            self.watch = [n for n, m in modules.items() if pick(n, m)]
            if not self.watch:
                raise ValueError(f"no module of {which} matches {layers!r}")
            return
        specs = [layers] if isinstance(layers, str) else list(layers)
        if not specs or not all(isinstance(s, str) for s in specs):
            raise TypeError(
                f"the sites of {which} must be a site name, a list of them, a module type or "
                f"a predicate, got {layers!r}"
            )
        self.names = [_parse_site(s, which) for s in specs]
        for name, _ in self.names:
            _lookup(modules, name, which)
        self.watch = list(dict.fromkeys(name for name, _ in self.names))

    def resolve(self, calls: dict[str, int], order: list[tuple[str, int]]) -> list[Site]:
        """The selected sites, from the calls of the first forward pass."""
        if self.names is None:
            sites = [Site(m, i, calls[m]) for m, i in order]
            if not sites:
                raise ValueError(
                    f"no module of {self.which} that matches {self.spec!r} ran in the first batch"
                )
        else:
            sites = [_site(spec, calls, self.which) for spec in self.names]
        labels = [s.label for s in sites]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a site of {self.which} is selected twice")
        return sites


class Selection:
    """What ``layers=`` asks for, checked against both models before any forward pass.

    ``layers`` is a site name (``"layer1.0.relu"`` or ``"layer1.0.relu#1"``), a
    ``(name_a, name_b)`` pair, a list of those, a module type (every site of that type, paired
    in call order), or a predicate ``f(name, module) -> bool`` (likewise).
    """

    def __init__(self, model_a: nn.Module, model_b: nn.Module, layers: LayerSpec) -> None:
        mods_a, mods_b = model_modules(model_a), model_modules(model_b)
        self.pick: Callable[[str, nn.Module], bool] | None = None
        self.pairs: list[tuple[tuple[str, int | None], tuple[str, int | None]]] = []
        if isinstance(layers, type) or (callable(layers) and not isinstance(layers, (str, tuple, list))):
            if isinstance(layers, type):
                kind = layers
                self.pick = lambda name, m: isinstance(m, kind)
            else:
                self.pick = layers
            self.spec = layers
            self.watch_a = [n for n, m in mods_a.items() if self.pick(n, m)]
            self.watch_b = [n for n, m in mods_b.items() if self.pick(n, m)]
            if not self.watch_a:
                raise ValueError(f"no module of model_a matches layers={layers!r}")
            if not self.watch_b:
                raise ValueError(f"no module of model_b matches layers={layers!r}")
            return
        specs = [layers] if isinstance(layers, (str, tuple)) else list(layers)
        if not specs:
            raise ValueError("layers is empty: name at least one layer")
        for spec in specs:
            if isinstance(spec, str):
                spec = (spec, spec)
            if not (isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec)):
                raise TypeError(f"each layer must be a name or a (name_a, name_b) pair, got {spec!r}")
            a, b = _parse_site(spec[0], "model_a"), _parse_site(spec[1], "model_b")
            _lookup(mods_a, a[0], "model_a")
            _lookup(mods_b, b[0], "model_b")
            self.pairs.append((a, b))
        self.watch_a = list(dict.fromkeys(a[0] for a, _ in self.pairs))
        self.watch_b = list(dict.fromkeys(b[0] for _, b in self.pairs))

    def resolve(
        self,
        calls_a: dict[str, int],
        order_a: list[tuple[str, int]],
        calls_b: dict[str, int],
        order_b: list[tuple[str, int]],
    ) -> list[SitePair]:
        """Site pairs, from the calls each watched module made in the first forward pass
        (``calls``: module -> number of calls; ``order``: (module, call) in call order)."""
        if self.pick is not None:
            sites_a = [Site(m, i, calls_a[m]) for m, i in order_a]
            sites_b = [Site(m, i, calls_b[m]) for m, i in order_b]
            if not sites_a:
                raise ValueError(
                    f"no module of model_a that matches layers={self.spec!r} ran in the first batch"
                )
            if len(sites_a) != len(sites_b):
                raise ValueError(
                    f"layers={self.spec!r} selects {len(sites_a)} sites of model_a "
                    f"({_few(s.label for s in sites_a)}) but {len(sites_b)} of model_b "
                    f"({_few(s.label for s in sites_b)}); name the pairs instead"
                )
            pairs = [(sa, sb) for sa, sb in zip(sites_a, sites_b)]
        else:
            pairs = [(_site(a, calls_a, "model_a"), _site(b, calls_b, "model_b")) for a, b in self.pairs]
        out = []
        for sa, sb in pairs:
            key = sa.label if sa.label == sb.label else (sa.label, sb.label)
            out.append(SitePair(key, sa, sb))
        keys = [p.key for p in out]
        if len(set(keys)) != len(keys):
            raise ValueError("a site is selected twice")
        return out


def _few(labels: Any, most: int = 6) -> str:
    labels = list(labels)
    return ", ".join(labels[:most]) + (", ..." if len(labels) > most else "")


def _site(spec: tuple[str, int | None], calls: dict[str, int], which: str) -> Site:
    module, index = spec
    k = calls.get(module, 0)
    if k == 0:
        raise ValueError(
            f"site {module!r} did not run in {which} in the first batch: pick a module "
            "that the forward pass calls"
        )
    if index is None:
        if k > 1:
            sites = ", ".join(repr(site_label(module, i, k)) for i in range(k))
            raise ValueError(
                f"module {module!r} of {which} runs {k} times per forward pass: name one "
                f"of its sites, {sites}"
            )
        index = 0
    if index >= k:
        raise ValueError(
            f"site {module}#{index} of {which} does not exist: the module runs {k} "
            f"time{'s' if k > 1 else ''} per forward pass"
        )
    return Site(module, index, k)
