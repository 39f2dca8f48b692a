"""Shared timing for the benchmarks: every case records its best time here, and the run ends
with a table of ratios between cases measured in this same run (never lone absolute times)."""

from __future__ import annotations

import time

TIMES: dict[str, float] = {}
RATIOS: list[tuple[str, str, str, str]] = []  # (what, numerator case, denominator case, target)
NOTES: list[str] = []


def timed(name: str, fn, rounds: int = 1):
    """Run fn `rounds` times, record the best wall time under `name`, return its last result."""
    best = float("inf")
    result = None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    TIMES[name] = min(TIMES.get(name, float("inf")), best)
    return result
