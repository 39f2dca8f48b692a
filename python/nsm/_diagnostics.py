"""nsm's warnings, emitted once at the door: every warning of the library goes through
:func:`warn`, which points it at the first line outside the nsm package (the user's call,
however deep inside nsm it was found), or, inside :func:`collect`, keeps it as data for the
code that asked (to drop, relabel with a site's name, or print).

Library code never changes the process's warning filters: ``warnings.catch_warnings`` is
process-wide and not thread-safe. A collector is local to the thread (and task) that opened it
(a context variable), so two comparisons in two threads do not see each other's warnings.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import warnings
from collections.abc import Callable, Iterator

__all__ = ["Note", "collect", "warn"]

#: A warning kept as data: (message, category).
Note = tuple[str, type[Warning]]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_collector: contextvars.ContextVar[Callable[[str, type[Warning]], None] | None] = contextvars.ContextVar(
    "nsm_diagnostics_collector", default=None
)


def _outside_nsm_level() -> int:
    """The ``stacklevel`` of the first frame outside the nsm package, seen from warn()'s caller."""
    frame = sys._getframe(2)  # warn()'s caller
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def warn(message: str, category: type[Warning]) -> None:
    """Warn at the user's line, or hand the warning to the collector this thread opened."""
    collector = _collector.get()
    if collector is not None:
        collector(message, category)
        return
    warnings.warn(message, category, stacklevel=_outside_nsm_level())


@contextlib.contextmanager
def collect(emit: Callable[[str, type[Warning]], None] | None = None) -> Iterator[list[Note]]:
    """Keep nsm's warnings raised inside the block as data (the yielded list), or pass each to
    ``emit`` as it comes; nothing reaches the warnings module. Collectors nest: the innermost
    one takes them."""
    notes: list[Note] = []
    token = _collector.set(emit if emit is not None else lambda m, c: notes.append((m, c)))
    try:
        yield notes
    finally:
        _collector.reset(token)
