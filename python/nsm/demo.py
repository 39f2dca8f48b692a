"""``nsm demo``: two CNNs trained from different seeds on scikit-learn's digits, compared layer by
layer on held-out images. Everything ships with the install; nothing is downloaded."""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["DemoResult", "run_demo"]

SEEDS = (1, 2)
DATA_SEED = 0


def _require() -> None:
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"nsm demo needs the demo extra: pip install 'neuron-subspace-match[demo]' (missing: {exc.name})"
        ) from exc


def digits_split(
    seed: int = DATA_SEED,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The 1,797 8x8 digit images of scikit-learn, scaled to [0, 1]: 70% to train, 30% held out."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    images = (images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.7 * len(images))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def small_cnn(seed: int) -> Any:
    """conv 16 -> ReLU -> conv 32 -> ReLU -> pool -> dense 64 -> ReLU -> dense 10."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
                ("relu1", nn.ReLU()),
                ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
                ("relu2", nn.ReLU()),
                ("pool", nn.MaxPool2d(2)),
                ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(32 * 4 * 4, 64)),
                ("relu3", nn.ReLU()),
                ("fc2", nn.Linear(64, 10)),
            ]
        )
    )


def train(
    model: Any, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int, bar: Any = None
) -> None:
    """Adam on cross-entropy, mini-batches of 64 in an order fixed by ``seed``."""
    import torch

    x = torch.from_numpy(images)
    y = torch.from_numpy(labels).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        if bar is not None:
            bar.update(1)
    model.eval()


def accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).argmax(dim=1).numpy()
    return float(np.mean(predicted == labels))


@dataclass
class DemoResult:
    comparison: Any
    accuracies: tuple[float, float]
    seconds: float
    paths: list[str]


def run_demo(
    out_dir: str = "nsm-report", quick: bool = False, progress: bool = True, echo: Callable[..., Any] = print
) -> DemoResult:
    """Train the two networks, compare their ReLU layers, print a table, write the report.

    Examples
    --------
    >>> import tempfile, nsm.demo
    >>> r = nsm.demo.run_demo(tempfile.mkdtemp(), quick=True, progress=False, echo=lambda *a: None)
    >>> list(r.comparison)
    ['relu1', 'relu2', 'relu3']
    """
    _require()
    import torch

    from ._progress import progress_bar
    from .plot.heatmap import plot_heatmap
    from .plot.report import DEMO_FIGURES, plot_curves, write_report
    from .torch import compare, compare_all

    start = time.perf_counter()
    torch.manual_seed(DATA_SEED)
    (x_train, y_train), (x_test, y_test) = digits_split()
    epochs = 2 if quick else 15
    models, accuracies = [], []
    bar = progress_bar(epochs * len(SEEDS), progress, "training two CNNs", "epoch")
    try:
        for seed in SEEDS:
            model = small_cnn(seed)
            train(model, x_train, y_train, epochs, seed, bar)
            models.append(model)
            accuracies.append(accuracy(model, x_test, y_test))
    finally:
        bar.close()
    echo(
        f"trained two CNNs on digits from seeds {SEEDS}: held-out accuracy "
        f"{accuracies[0]:.1%} and {accuracies[1]:.1%} ({len(x_test)} images)"
    )
    test = torch.from_numpy(x_test)
    batches = list(test.split(60))
    comparison = compare(models[0], models[1], batches, ["relu1", "relu2", "relu3"], progress=progress)
    echo(comparison.table())
    paths = write_report(comparison, out_dir)
    # The centred match from the same Grams (no second pass): its curves and baselines beside
    # the uncentred ones show what the layers share beyond their mean.
    centered = comparison.recentered()
    curves, *heatmaps = DEMO_FIGURES
    paths.append(os.path.join(out_dir, curves))
    plot_curves(centered, path=paths[-1])
    echo(
        "centred match (each neuron's mean removed; curves_centred.png): match_auc "
        + ", ".join(
            f"{key} {centered[key].match_auc():.3f} (baseline {centered[key].baseline_match_auc():.3f})"
            for key in centered
        )
    )
    # Every layer of one network against every layer of the other: the finer map of a pair is
    # average-pooled to the coarser grid, so every pair has samples to share.
    grid = compare_all(
        models[0], models[1], batches, ["relu1", "relu2", "relu3"], samples="pool", progress=progress
    )
    for name, measure in zip(heatmaps, ("match_auc", "linear_cka")):
        path = os.path.join(out_dir, name)
        plot_heatmap(grid, measure=measure, path=path)
        paths.append(path)
    seconds = time.perf_counter() - start
    echo(f"wrote {', '.join(paths)} in {seconds:.1f} s")
    return DemoResult(comparison, (accuracies[0], accuracies[1]), seconds, paths)
