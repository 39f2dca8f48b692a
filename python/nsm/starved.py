"""Starved layers: too few samples per neuron for the similarity to tell related layers from
unrelated ones (docs/method.md, "Starved layers"; the simulation is bench/bench_starved.py)."""

from __future__ import annotations

__all__ = ["FEW_SAMPLES_RATIO", "few_samples"]

#: A layer pair is flagged when ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``: below it, two
#: unrelated post-ReLU layers reach similarity 0.05 at some ε <= 0.5 (bench/bench_starved.py).
FEW_SAMPLES_RATIO = 2.0


def few_samples(n_samples: int, n_x: int, n_y: int, centered: bool = False) -> bool:
    """Whether a layer pair is starved: ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``.

    Below that ratio unrelated layers already match at ε <= 0.5, so a similarity there says
    little about the networks. The same ratio serves the centred match (its floor is higher,
    so the rule is conservative there). :class:`nsm.FewSamplesWarning` marks the degenerate
    end, ``n_samples <= n_x + n_y``, where any layers can match.

    Examples
    --------
    >>> from nsm.starved import few_samples
    >>> few_samples(512, 512, 512), few_samples(4096, 512, 512)
    (True, False)
    """
    return n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)
