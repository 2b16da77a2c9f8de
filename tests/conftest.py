"""Shared test setup: headless MuJoCo and a skip for tests that need the Menagerie robots."""

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_collection_modifyitems(config, items):
    skip_menagerie = pytest.mark.skip(reason="MENAGERIE_ROOT is not set (see README: Menagerie robots offline)")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    has_cuda = None
    for item in items:
        if "menagerie" in item.keywords and not os.environ.get("MENAGERIE_ROOT"):
            item.add_marker(skip_menagerie)
        if "cuda" in item.keywords:
            if has_cuda is None:
                import torch

                has_cuda = torch.cuda.is_available()
            if not has_cuda:
                item.add_marker(skip_cuda)
