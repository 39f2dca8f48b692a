"""Fixtures shared by the test modules (helpers that tests import live in tests/cases.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
