"""Fixtures shared by the test modules (helpers that tests import live in tests/cases.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True, scope="session")
def threaded_engine_on_small_layers():
    """The engine gives a thread at least 1,024 neurons (both layers together), so on the small
    layers of the tests it would run on one thread whatever num_threads says; the suite lowers
    that to one neuron per thread so that its 1-against-N-threads checks reach the threaded
    paths (tests/test_threads.py tests the default rule)."""
    from nsm import _core

    default = _core._testing.engine_neurons_per_thread()
    _core._testing.set_engine_neurons_per_thread(1)
    yield
    _core._testing.set_engine_neurons_per_thread(default)


@pytest.fixture
def engine_rule_of_users():
    """The engine's default thread rule (the suite lowers it to reach the threaded paths): with
    it, these narrow pairs each run on one thread, so nsm.results.cross computes pairs side by side."""
    from nsm import _core

    lowered = _core._testing.engine_neurons_per_thread()
    _core._testing.set_engine_neurons_per_thread(1024)
    yield
    _core._testing.set_engine_neurons_per_thread(lowered)
