"""How many samples a layer pair needs, as two diagnostics named for what they mean (they were
all "few samples" before):

- **degenerate** (:func:`degenerate`): at most as many samples as neurons, where one layer's
  span can hold the other's whatever the networks compute (a :class:`nsm.FewSamplesWarning`);
- **starved** (:func:`starved`): under ``FEW_SAMPLES_RATIO`` samples per neuron, where chance
  lowers every critical ε enough to inflate the similarity (docs/method.md, "Starved layers";
  the simulation is bench/bench_starved.py).

Results carry both (``Thresholds.degenerate``, ``Thresholds.starved``, and the same on a
layer comparison); only the public entry points warn."""

from __future__ import annotations

__all__ = ["FEW_SAMPLES_RATIO", "degenerate", "few_samples", "starved"]

#: A layer pair is flagged when ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``. From 4 samples
#: per neuron up, the ε at which two unrelated post-ReLU layers start to match (their floor) is
#: within 0.05 of its well-sampled value, uncentred and centred, at 32 to 512 neurons a layer
#: (bench/bench_starved.py: at most 0.042 lower at 4, 0.062 at 3, 0.10 at 2, 0.24 at 1).
FEW_SAMPLES_RATIO = 4.0


def degenerate(n_samples: int, n: int, centered: bool = False) -> bool:
    """Whether the match of ``n`` neurons on ``n_samples`` samples is degenerate:
    ``n_samples <= n`` (centred activations span at most ``n_samples - 1`` directions, as they
    sum to zero: ``n_samples - 1 <= n`` for the centred match). Any layers can match there.

    Examples
    --------
    >>> from nsm.starved import degenerate
    >>> degenerate(20, 20), degenerate(21, 20), degenerate(21, 20, centered=True)
    (True, False, True)
    """
    return n_samples - int(centered) <= n


def starved(n_samples: int, n_x: int, n_y: int) -> bool:
    """Whether a layer pair is starved: ``n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)``.

    Below that ratio chance alone lowers every neuron's critical ε noticeably (unrelated
    layers match sooner and related layers look more similar than they are), so a similarity
    there is inflated. The same ratio holds for the centred match (bench/bench_starved.py).
    :class:`nsm.FewSamplesWarning` marks the degenerate end, ``n_samples <= n_x + n_y``, where
    any layers can match.

    Examples
    --------
    >>> from nsm.starved import starved
    >>> starved(2048, 512, 512), starved(4096, 512, 512)
    (True, False)
    """
    return n_samples < FEW_SAMPLES_RATIO * (n_x + n_y)


#: The name results and saved files use for :func:`starved` (``few_samples`` columns and fields).
few_samples = starved
