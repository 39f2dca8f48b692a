"""Short, distinct axis labels for many layer or site names."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["shorten_labels"]

SEPARATORS = "./:_- "


def shorten_labels(labels: Sequence[str], max_chars: int = 28) -> tuple[str, list[str]]:
    """Drop the prefix all ``labels`` share (cut after a separator, never inside a name's part)
    and shorten each remaining label longer than ``max_chars`` by eliding its middle with "…".

    Labels stay distinct and non-empty: a prefix that would empty a label is cut back to the
    previous separator, and a label is kept whole when eliding would make it equal another.

    Parameters
    ----------
    labels : sequence of str
    max_chars : int
        Longest label kept whole (at least 5).

    Returns
    -------
    (prefix, short) : the elided common prefix ("" if none) and the shortened labels.

    Examples
    --------
    >>> from nsm.plot.labels import shorten_labels
    >>> shorten_labels(["encoder.layer1.0.relu", "encoder.layer1.1.relu", "encoder.layer2.0.relu"])
    ('encoder.', ['layer1.0.relu', 'layer1.1.relu', 'layer2.0.relu'])
    >>> shorten_labels(["layer1", "layer12"])  # no separator inside the common part
    ('', ['layer1', 'layer12'])
    >>> shorten_labels(["model.backbone.stage_three.block_eleven.conv"], max_chars=16)
    ('', ['model.b…ven.conv'])
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 5:
        raise ValueError(f"max_chars must be an int >= 5, got {max_chars!r}")
    labels = [str(label) for label in labels]
    prefix = ""
    if len(labels) > 1:
        common = os.path.commonprefix(labels)
        cut = max((common.rfind(s) for s in SEPARATORS), default=-1) + 1
        prefix = common[:cut]
        while prefix and any(len(label) == len(prefix) for label in labels):
            cut = max((prefix[:-1].rfind(s) for s in SEPARATORS), default=-1) + 1
            prefix = prefix[:cut]
    short = [label[len(prefix) :] for label in labels]
    out = []
    for label in short:
        if len(label) > max_chars:
            head = (max_chars - 1) // 2
            tail = max_chars - 1 - head
            label = label[:head] + "…" + label[len(label) - tail :]
        out.append(label)
    # Where eliding made two labels equal, keep them whole.
    clashes = {label for label in out if out.count(label) > 1}
    return prefix, [whole if label in clashes else label for whole, label in zip(short, out)]
