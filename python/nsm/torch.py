"""Compare two torch models layer by layer: stream a DataLoader through both and accumulate each
layer pair's Gram matrix, never holding more than one batch of activations.

Importing this module imports torch; ``import nsm`` alone does not.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised by the no-torch test in a subprocess
    raise ImportError(
        "nsm.torch needs PyTorch: install the extra with `pip install 'neuron-subspace-match[torch]'` "
        "(or `pip install torch`)"
    ) from exc

from . import _core
from .comparison import DEFAULT_EPS, Comparison, LayerComparison, LayerKey
from .gram import Gram
from .match import _check_eps
from .progress import progress_bar
from .thresholds import Thresholds, match_thresholds

__all__ = ["Comparison", "LayerComparison", "capture", "compare"]

TOKEN_MODES = ("samples", "mean", "cls")
# Modules whose 3-D outputs are (N, C, L), channels first; other 3-D outputs are (N, T, C).
CHANNELS_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d,
                     nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d, nn.InstanceNorm1d)

# CPU activations go to nsm's C++ Gram kernels; False sends them through the float64 torch
# matmuls used on GPUs (the tests use it to check that path without a GPU).
CORE_ON_CPU = True

LayerSpec = Union[str, tuple, type, Callable[[str, "nn.Module"], bool], Sequence[Any]]


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel wrappers."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in _unwrap(model).named_modules() if name}


def _lookup(modules: dict[str, nn.Module], name: str, which: str) -> nn.Module:
    if name not in modules:
        known = ", ".join(list(modules)[:12]) + (", ..." if len(modules) > 12 else "")
        raise ValueError(f"layer {name!r} not found in {which}; its modules are: {known}")
    return modules[name]


def resolve_layers(model_a: nn.Module, model_b: nn.Module, layers: LayerSpec
                   ) -> list[tuple[LayerKey, str, str]]:
    """(key, name in A, name in B) for each layer pair that ``layers`` selects.

    ``layers`` is a module name, a ``(name_a, name_b)`` pair, a list of those, a module type
    (every module of that type, paired in order), or a predicate ``f(name, module) -> bool``
    (likewise paired in order).
    """
    mods_a, mods_b = _modules(model_a), _modules(model_b)
    if isinstance(layers, type) or (callable(layers) and not isinstance(layers, (str, tuple, list))):
        if isinstance(layers, type):
            kind = layers
            pick = lambda name, m: isinstance(m, kind)  # noqa: E731
        else:
            pick = layers
        names_a = [n for n, m in mods_a.items() if pick(n, m)]
        names_b = [n for n, m in mods_b.items() if pick(n, m)]
        if not names_a:
            raise ValueError(f"no module of model_a matches layers={layers!r}")
        if len(names_a) != len(names_b):
            raise ValueError(f"layers={layers!r} selects {len(names_a)} modules of model_a but "
                             f"{len(names_b)} of model_b; name the pairs instead")
        pairs = list(zip(names_a, names_b))
    else:
        specs = [layers] if isinstance(layers, (str, tuple)) else list(layers)
        if not specs:
            raise ValueError("layers is empty: name at least one layer")
        pairs = []
        for spec in specs:
            if isinstance(spec, str):
                pairs.append((spec, spec))
            elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, str) for s in spec):
                pairs.append(spec)
            else:
                raise TypeError(f"each layer must be a name or a (name_a, name_b) pair, got {spec!r}")
    out = []
    for name_a, name_b in pairs:
        _lookup(mods_a, name_a, "model_a")
        _lookup(mods_b, name_b, "model_b")
        out.append((name_a if name_a == name_b else (name_a, name_b), name_a, name_b))
    keys = [k for k, _, _ in out]
    if len(set(keys)) != len(keys):
        raise ValueError("a layer is selected twice")
    return out


def _first_tensor(output: Any, layer: str) -> torch.Tensor:
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
    raise TypeError(f"layer {layer!r} returned {type(output).__name__}; nsm needs a tensor, a "
                    "tuple or list whose first item is one, or an output with last_hidden_state")


def activation_rows(t: torch.Tensor, layer: str, module: nn.Module, tokens: str,
                    channels_first: bool = False) -> torch.Tensor:
    """Activations as (samples, neurons): channels are neurons and every (input, position) a
    sample for (N, C, ...) outputs; units for (N, C); tokens (or pooled tokens) for (N, T, C).
    With ``channels_first``, (N, C, ...) outputs stay a (N, C, positions) view instead (nsm's
    C++ Gram reads it as N * positions samples without a copy)."""
    if t.ndim == 2:
        return t
    if t.ndim >= 4 or (t.ndim == 3 and isinstance(module, CHANNELS_FIRST_1D)):
        if channels_first:
            return t.reshape(t.shape[0], t.shape[1], -1)
        return t.movedim(1, -1).reshape(-1, t.shape[1])
    if t.ndim == 3:
        if tokens == "samples":
            return t.reshape(-1, t.shape[2])
        if tokens == "mean":
            return t.mean(dim=1)
        return t[:, 0]
    raise ValueError(f"layer {layer!r} gives outputs of shape {tuple(t.shape)}; nsm needs (N, C) "
                     "units, (N, C, H, W) channels or (N, T, C) tokens: pick another layer")


def _rows(v: torch.Tensor) -> torch.Tensor:
    """(samples, neurons) rows of an activation_rows result."""
    return v.movedim(1, -1).reshape(-1, v.shape[1]) if v.ndim == 3 else v


def _samples(v: torch.Tensor) -> int:
    return v.shape[0] * v.shape[2] if v.ndim == 3 else v.shape[0]


def _restore_modes(model: nn.Module) -> Callable[[], None]:
    saved = [(m, m.training) for m in model.modules()]

    def restore() -> None:
        for m, training in saved:
            m.training = training

    return restore


class Capture:
    """What the hooks saw in the last forward pass of each model, by layer name."""

    def __init__(self) -> None:
        self.a: dict[str, torch.Tensor] = {}
        self.b: dict[str, torch.Tensor] = {}


@contextlib.contextmanager
def capture(model_a: nn.Module, model_b: nn.Module, layers: LayerSpec) -> Iterator[Capture]:
    """Forward hooks on the selected layers of two models, removed on exit (also after an
    exception). Inside, both models are in eval mode; on exit every module gets back the mode
    it had. The hooks keep only the latest output of each layer, detached.

    Examples
    --------
    >>> import torch, nsm.torch
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
    >>> with nsm.torch.capture(a, b, "1") as seen, torch.no_grad():
    ...     _ = a(torch.ones(3, 4)), b(torch.ones(3, 4))
    >>> seen.a["1"].shape, seen.b["1"].shape
    (torch.Size([3, 8]), torch.Size([3, 6]))
    """
    with _hooked(model_a, model_b, resolve_layers(model_a, model_b, layers)) as seen:
        yield seen


@contextlib.contextmanager
def _hooked(model_a: nn.Module, model_b: nn.Module, pairs: list[tuple[LayerKey, str, str]]
            ) -> Iterator[Capture]:
    """capture() for layer pairs that resolve_layers already checked."""
    seen = Capture()
    handles = []
    restores = [_restore_modes(model_a), _restore_modes(model_b)]
    try:
        for (model, store, names) in ((model_a, seen.a, {a for _, a, _ in pairs}),
                                      (model_b, seen.b, {b for _, _, b in pairs})):
            mods = _modules(model)
            for name in names:
                def hook(module, inputs, output, name=name, store=store):
                    store[name] = _first_tensor(output, name).detach()
                handles.append(mods[name].register_forward_hook(hook))
        model_a.eval()
        model_b.eval()
        yield seen
    finally:
        for h in handles:
            h.remove()
        for restore in restores:
            restore()


def _move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _move(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(_move(v, device) for v in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_move(v, device) for v in batch)
    return batch


def _forward(model: nn.Module, batch: Any) -> None:
    """Run a model on a DataLoader batch: a tensor, a tuple or list (its first item is the
    input, the rest labels), or a dict of keyword arguments."""
    if isinstance(batch, torch.Tensor):
        model(batch)
    elif isinstance(batch, Mapping):
        model(**batch)
    elif isinstance(batch, (tuple, list)) and batch:
        model(batch[0])
    else:
        raise TypeError(f"cannot feed a batch of type {type(batch).__name__} to a model; use "
                        "tensors, (input, label) tuples or dicts of keyword arguments")


class _Accumulator:
    """A layer pair's Gram: nsm's C++ Gram for CPU tensors, float64 torch matmuls on a GPU."""

    def __init__(self, n_x: int, n_y: int, device: torch.device, core: bool) -> None:
        self.n_x, self.n_y, self.device = n_x, n_y, device
        if core:
            # float64 until compare() offers precision= (its baseline subtracts float64 blocks).
            self.gram: Gram | None = Gram(n_x, n_y, precision="float64")
        else:
            self.gram = None
            self.matrix = torch.zeros(n_x + n_y, n_x + n_y, dtype=torch.float64, device=device)
            self.sums = torch.zeros(n_x + n_y, dtype=torch.float64, device=device)
            self.n_samples = 0

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if self.gram is not None:
            self.gram._add_views(_numpy_view(a), _numpy_view(b), torch.get_num_threads())
            return
        block = torch.cat([_rows(a), _rows(b)], dim=1).to(torch.float64)
        if not torch.isfinite(block).all():
            raise ValueError("activations contain NaN or Inf")
        self.matrix.addmm_(block.T, block)
        self.sums += block.sum(dim=0)
        self.n_samples += block.shape[0]

    def local(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(Gram, column sums, samples) of this process, as float64 tensors."""
        if self.gram is not None:
            return (torch.from_numpy(np.array(self.gram.matrix)), torch.from_numpy(self.gram.column_sums),
                    self.gram.n_samples)
        return self.matrix, self.sums, self.n_samples


class _ShiftedBaseline:
    """The Gram of [A_i, B_(i-1)] summed over batches i >= 1: batch i of model A against batch
    i-1 of model B, which keeps each layer's statistics and breaks the pairing of samples.

    Its diagonal blocks are the real Gram's, less the rows that have no partner (the first
    batch of A, the last of B, and the tails of unequal batches), so only the cross block
    A_i^T B_(i-1) is a new product.
    """

    def __init__(self, n_x: int, n_y: int, device: torch.device, core: bool) -> None:
        f64 = {"dtype": torch.float64, "device": device}
        self.n_x, self.n_y = n_x, n_y
        # The cross block: nsm's C++ kernel on the CPU, float64 torch matmuls on a GPU.
        self.cpu_cross = _core.GramAccumulator(n_x, n_y) if core else None
        self.cross = None if core else torch.zeros(n_x, n_y, **f64)
        self.unpaired_a = torch.zeros(n_x, n_x, **f64)
        self.unpaired_a_sums = torch.zeros(n_x, **f64)
        self.unpaired_b = torch.zeros(n_y, n_y, **f64)
        self.unpaired_b_sums = torch.zeros(n_y, **f64)
        self.n_samples = 0

    def unpaired(self, rows: torch.Tensor, side: str) -> None:
        r = _rows(rows).to(torch.float64)
        if side == "a":
            self.unpaired_a.addmm_(r.T, r)
            self.unpaired_a_sums += r.sum(dim=0)
        else:
            self.unpaired_b.addmm_(r.T, r)
            self.unpaired_b_sums += r.sum(dim=0)

    def add(self, a: torch.Tensor, previous_b: torch.Tensor) -> None:
        m = min(a.shape[0], previous_b.shape[0])  # inputs (or samples) that have a partner
        if self.cpu_cross is not None:
            self.cpu_cross.update(_numpy_view(a[:m]), _numpy_view(previous_b[:m]),
                                  torch.get_num_threads(), cross_only=True)
        else:
            self.cross.addmm_(_rows(a[:m]).to(torch.float64).T, _rows(previous_b[:m]).to(torch.float64))
        if m < a.shape[0]:
            self.unpaired(a[m:], "a")
        if m < previous_b.shape[0]:
            self.unpaired(previous_b[m:], "b")
        self.n_samples += _samples(a[:m])

    def local(self, matrix: torch.Tensor, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(Gram, column sums, samples) of this process, from the real Gram's."""
        n_x = self.n_x
        if self.cpu_cross is not None:
            cross = torch.from_numpy(self.cpu_cross.matrix()[n_x:, :n_x].T.copy())
        else:
            cross = self.cross
        out = matrix.clone().to(cross.device)
        total = sums.clone().to(cross.device)
        out[:n_x, :n_x] -= self.unpaired_a
        out[n_x:, n_x:] -= self.unpaired_b
        out[:n_x, n_x:] = cross
        out[n_x:, :n_x] = cross.T
        total[:n_x] -= self.unpaired_a_sums
        total[n_x:] -= self.unpaired_b_sums
        return out, total, self.n_samples


def _reduced_gram(matrix: torch.Tensor, sums: torch.Tensor, n_samples: int, n_x: int) -> Gram:
    """A Gram from this process's parts, summed over all ranks when torch.distributed runs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        matrix, sums, n_samples = _all_reduce(matrix, sums, n_samples)
    return Gram.from_matrix(matrix.cpu().numpy(), n_x, int(n_samples), column_sums=sums.cpu().numpy())


def _numpy_view(t: torch.Tensor) -> np.ndarray:
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.numpy()


def _all_reduce(matrix: torch.Tensor, sums: torch.Tensor, n_samples: int):
    """Sum a Gram over all ranks; every rank gets the total."""
    dist = torch.distributed
    device = matrix.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    packed = torch.cat([matrix.reshape(-1), sums, torch.tensor([float(n_samples)], dtype=torch.float64,
                                                               device=matrix.device)]).to(device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    n = matrix.shape[0]
    packed = packed.to(matrix.device)
    return packed[: n * n].reshape(n, n), packed[n * n: n * n + n], int(round(packed[-1].item()))


def _optional_thresholds(gram: Gram | None, count_dead: bool) -> Thresholds | None:
    if gram is None or gram.n_samples == 0:
        return None
    return match_thresholds(gram, count_dead=count_dead)


def _check_max_batches(max_batches: Any) -> int | None:
    if max_batches is None:
        return None
    if isinstance(max_batches, bool) or not isinstance(max_batches, numbers.Integral) or max_batches < 1:
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    return int(max_batches)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Iterable[Any],
    layers: LayerSpec,
    *,
    eps: Iterable[float] = DEFAULT_EPS,
    device: Any = None,
    max_batches: int | None = None,
    tokens: str = "samples",
    progress: bool = True,
    count_dead: bool = True,
    baseline: bool = True,
) -> Comparison:
    """Compare two models layer by layer on the same data.

    Streams ``data`` (any iterable of batches, typically a DataLoader) through both models
    under ``torch.no_grad()`` in eval mode, and adds each batch's activations of every selected
    layer pair to that pair's float64 Gram matrix, computed where the activations live. Memory is
    O(n²) per layer whatever the number of samples. When ``torch.distributed`` is initialised,
    each rank streams its own shard and the Grams are summed across ranks (every rank gets the
    same result).

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The two networks (DataParallel/DistributedDataParallel wrappers are unwrapped).
    data : iterable
        Batches: tensors, tuples or lists whose first item is the input, or dicts of keyword
        arguments for the models.
    layers : name, (name_a, name_b), list of those, module type, or predicate(name, module)
        Which layer pairs to compare (see :func:`resolve_layers`).
    eps : sequence of floats
        The ε values of the summary table (all ε are available afterwards).
    device : torch device, optional
        Where to run; default: the device of ``model_a``'s parameters. Both models must be there.
    max_batches : int, optional
        Stop after this many batches.
    tokens : {'samples', 'mean', 'cls'}
        For (N, T, C) outputs: every token is a sample, or tokens are mean-pooled, or the first
        token is taken.
    progress : bool
        Show a progress bar over batches (tqdm).
    count_dead : bool
        Count dead neurons in the similarity's denominator.
    baseline : bool
        Also accumulate the shifted-batch baseline (its cross block costs about half as much
        again as the Gram itself); without it ``LayerComparison.baseline`` gives NaN.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import torch, nsm.torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> a = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
    >>> data = [torch.randn(256, 8) for _ in range(8)]
    >>> c = nsm.torch.compare(a, b, data, "1", progress=False)
    >>> c["1"].n_samples
    2048
    >>> bool(c["1"].similarity(0.5) > 0)
    True
    """
    eps_values, _ = _check_eps(list(eps))
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens must be one of {TOKEN_MODES}, got {tokens!r}")
    max_batches = _check_max_batches(max_batches)
    pairs = resolve_layers(model_a, model_b, layers)
    device = torch.device(device) if device is not None else _model_device(model_a)
    for which, model in (("model_a", model_a), ("model_b", model_b)):
        d = _model_device(model)
        other_index = d.index is not None and device.index is not None and d.index != device.index
        if d.type != device.type or other_index:
            raise ValueError(f"{which} is on {d} but the comparison runs on {device}; move it there")
    mods_a, mods_b = _modules(model_a), _modules(model_b)
    # CPU activations go to the C++ kernels, as (N, C, positions) views for conv layers.
    core = device.type == "cpu" and CORE_ON_CPU
    accs: dict[LayerKey, _Accumulator] = {}
    bases: dict[LayerKey, _ShiftedBaseline] = {}
    previous_b: dict[LayerKey, torch.Tensor] = {}
    total = None
    if hasattr(data, "__len__"):
        total = len(data) if max_batches is None else min(len(data), max_batches)
    bar = progress_bar(total, progress, "nsm compare", "batch")
    try:
        with _hooked(model_a, model_b, pairs) as seen, torch.no_grad():
            for i, batch in enumerate(data):
                if max_batches is not None and i >= max_batches:
                    break
                batch = _move(batch, device)
                _forward(model_a, batch)
                _forward(model_b, batch)
                for key, name_a, name_b in pairs:
                    a = activation_rows(seen.a[name_a], name_a, mods_a[name_a], tokens, core)
                    b = activation_rows(seen.b[name_b], name_b, mods_b[name_b], tokens, core)
                    if _samples(a) != _samples(b) or a.shape[0] != b.shape[0]:
                        raise ValueError(f"layer {key!r}: model_a gives {_samples(a)} samples per "
                                         f"batch but model_b gives {_samples(b)}; both must see the "
                                         "same inputs at the same positions")
                    if key not in accs:
                        accs[key] = _Accumulator(a.shape[1], b.shape[1], a.device, core)
                        bases[key] = _ShiftedBaseline(a.shape[1], b.shape[1], a.device, core)
                    try:
                        accs[key].add(a, b)
                    except ValueError as exc:
                        raise ValueError(f"layer {key!r}: {exc}") from None
                    if not baseline:
                        continue
                    if key in previous_b:
                        bases[key].add(a, previous_b[key])
                    else:
                        bases[key].unpaired(a, "a")  # the first batch of A has no partner
                    previous_b[key] = b
                bar.update(1)
    finally:
        bar.close()
    if not accs:
        raise ValueError("data gave no batch")
    results = {}
    for key, _, _ in pairs:
        matrix, sums, n_samples = accs[key].local()
        gram = _reduced_gram(matrix, sums, n_samples, accs[key].n_x)
        base_gram = None
        if baseline:
            bases[key].unpaired(previous_b[key], "b")  # nor has the last batch of B
            base_gram = _reduced_gram(*bases[key].local(matrix, sums), accs[key].n_x)
        results[key] = LayerComparison(
            name=key,
            thresholds=match_thresholds(gram, count_dead=count_dead),
            baseline_thresholds=_optional_thresholds(base_gram, count_dead),
            eps=tuple(eps_values),
            gram=gram,
            baseline_gram=base_gram if base_gram is not None and base_gram.n_samples else None,
        )
    return Comparison(results, eps_values)
