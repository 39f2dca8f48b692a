"""Compare two torch models site by site: stream batches through both and accumulate each site
pair's Gram matrix, never holding more than one batch of activations.

One module per concept: ``sites`` (finding and naming activation sites), ``capture`` (hooks and
per-batch values), ``layout`` (from outputs to samples), ``accumulate`` (the Gram where the
activations live), ``baseline`` (the shifted-batch baseline), ``distributed`` (sums across
processes), ``batches`` (feeding data) and ``compare`` itself.

Importing this package imports torch; ``import nsm`` alone does not.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the no-torch test in a subprocess
    raise ImportError(
        "nsm.torch needs PyTorch: install the extra with `pip install 'neuron-subspace-match[torch]'` "
        "(or `pip install torch`)"
    ) from exc

from ..results import Comparison, LayerComparison
from .capture_context import Capture, capture
from .compare import compare
from .grid import compare_all
from .layout import LAYOUTS, TOKEN_MODES

__all__ = [
    "LAYOUTS",
    "TOKEN_MODES",
    "Capture",
    "Comparison",
    "LayerComparison",
    "capture",
    "compare",
    "compare_all",
]
