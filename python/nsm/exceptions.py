"""Warnings that nsm emits."""

from __future__ import annotations

__all__ = ["FewSamplesWarning", "NsmWarning"]


class NsmWarning(UserWarning):
    """Base class of nsm's warnings."""


class FewSamplesWarning(NsmWarning):
    """Raised (as a warning) when ``n_samples <= n_x + n_y``: with at most as many samples as
    neurons, one layer's span can hold the other layer's neurons without any shared structure
    (``n_samples`` independent neurons span every vector), so the similarity is inflated and
    says little. It is not always 1: a small layer against a layer of fewer than
    ``n_samples`` neurons can still match nothing (docs/method.md, "Conventions")."""
