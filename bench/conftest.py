"""Shared timing for the benchmarks: every case records its best time here, and the run ends
with a table of ratios between cases measured in this same run (never lone absolute times)."""

from __future__ import annotations

import os
import sys
import time

import pytest

# The benchmarks build their models with the tests' model zoo.
TESTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

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


@pytest.fixture
def run(benchmark):
    """run(name, fn, rounds): time fn under pytest-benchmark (a single call when it is
    disabled) and in our own table."""

    def _run(name: str, fn, rounds: int = 1):
        return benchmark.pedantic(lambda: timed(name, fn, rounds), rounds=1, iterations=1)

    return _run


def pytest_terminal_summary(terminalreporter):
    if not TIMES and not NOTES:
        return
    tr = terminalreporter
    tr.section("nsm benchmark: ratios measured in this run")
    tr.write_line("| case | seconds |")
    tr.write_line("|---|---|")
    for name, seconds in TIMES.items():
        tr.write_line(f"| {name} | {seconds:.4f} |")
    if RATIOS:
        tr.write_line("")
        tr.write_line("| what | ratio | target |")
        tr.write_line("|---|---|---|")
        for what, num, den, target in RATIOS:
            if num in TIMES and den in TIMES:
                tr.write_line(f"| {what} | {TIMES[num] / TIMES[den]:.3g} | {target} |")
    for note in NOTES:
        tr.write_line(note)
