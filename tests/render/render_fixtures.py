"""Shared pytest fixtures for the rasterizer tests (imported by the test modules)."""

from __future__ import annotations

import pytest
import torch

from drrobot.render.extension import ENV_DISABLE, load_extension


@pytest.fixture(params=["torch", "cpp"])
def composite_impl(request, monkeypatch, one_thread):
    """Run the test once with the pure-torch compositing and once with the C++ kernel."""
    monkeypatch.setenv(ENV_DISABLE, "1" if request.param == "torch" else "0")
    if request.param == "cpp" and load_extension() is None:
        pytest.skip("C++ compositing extension unavailable")
    return request.param


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny scenes: one intra-op thread is faster and immune to thread-pool stalls on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
