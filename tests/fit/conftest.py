"""Fixtures for the fitting tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fit_helpers import surface_model  # noqa: E402


@pytest.fixture(scope="session")
def toy_model():
    """The toy arm's surface self-model (shared, read-only)."""
    return surface_model("toy_arm", points=1500)
