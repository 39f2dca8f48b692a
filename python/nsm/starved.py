"""Starved layers: too few samples per neuron for the similarity to be read at face value
(docs/method.md, "Starved layers"; the simulation is bench/bench_starved.py)."""

from __future__ import annotations

__all__ = ["FEW_SAMPLES_RATIO", "few_samples"]

#: A layer pair is flagged when ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``. From 4 samples
#: per neuron up, the ε at which two unrelated post-ReLU layers start to match (their floor) is
#: within 0.05 of its well-sampled value, uncentred and centred, at 32 to 512 neurons a layer
#: (bench/bench_starved.py: at most 0.042 lower at 4, 0.062 at 3, 0.10 at 2, 0.24 at 1).
FEW_SAMPLES_RATIO = 4.0


def few_samples(n_samples: int, n_x: int, n_y: int) -> bool:
    """Whether a layer pair is starved: ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``.

    Below that ratio chance alone lowers every neuron's critical ε noticeably (unrelated
    layers match sooner and related layers look more similar than they are), so a similarity
    there is inflated. The same ratio holds for the centred match (bench/bench_starved.py).
    :class:`nsm.FewSamplesWarning` marks the degenerate end, ``n_samples <= n_x + n_y``, where
    any layers can match.

    Examples
    --------
    >>> from nsm.starved import few_samples
    >>> few_samples(2048, 512, 512), few_samples(4096, 512, 512)
    (True, False)
    """
    return n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)
