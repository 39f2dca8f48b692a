"""The benchmarks' fixture and their closing table (the timing itself is in bench/timing.py)."""

from __future__ import annotations

import pytest

from bench.timing import NOTES, RATIOS, TIMES, timed


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
