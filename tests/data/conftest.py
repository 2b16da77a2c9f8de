"""Fixtures for the dataset tests."""

from __future__ import annotations

import pytest
from data_helpers import tiny_config

from drrobot.data.generate import generate


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """A complete toy_arm dataset shared by read-only tests (copy it before changing it)."""
    root = tmp_path_factory.mktemp("toy_dataset")
    generate(tiny_config(root), progress=False)
    return root
