"""Warnings that nsm emits."""

from __future__ import annotations

__all__ = ["FewSamplesWarning", "NsmWarning"]


class NsmWarning(UserWarning):
    """Base class of nsm's warnings."""


class FewSamplesWarning(NsmWarning):
    """Fewer samples than the two layers have neurons: every neuron then lies in the span of
    the other layer and the similarity is trivially 1 (docs/method.md, "Conventions")."""
