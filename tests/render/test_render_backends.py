"""The compositing implementations agree with each other; meta, dispatch and fall-back (and the build's lock);
CUDA vs gsplat."""

from __future__ import annotations

import os
import threading
import time
import warnings

import pytest
import torch
from render_fixtures import one_thread  # noqa: F401  (fixture)
from render_scenes import cluster_scene

from drrobot.render import composite, rasterize
from drrobot.render.extension import ENV_DISABLE, load_extension, wait_for_other_build

DIFF = ("means", "quats", "scales", "opacities", "colors", "viewmats")
needs_ext = pytest.mark.skipif(load_extension() is None, reason="C++ compositing extension unavailable")


def _render_and_grads(scene, seed=0, **kw):
    args = {k: (v.detach().clone().requires_grad_(True) if k in DIFF else v) for k, v in scene.items()}
    colors, alphas, meta = rasterize(**args, **kw)
    g = torch.Generator(device=colors.device).manual_seed(seed)
    loss = (colors * torch.randn(colors.shape, generator=g, device=colors.device, dtype=colors.dtype)).sum()
    loss = loss + (alphas * torch.randn(alphas.shape, generator=g, device=colors.device, dtype=colors.dtype)).sum()
    loss.backward()
    return colors.detach(), alphas.detach(), {k: args[k].grad for k in DIFF}, meta


def _assert_grads_close(g, ref, rel):
    for k in ref:
        scale = ref[k].abs().max().item()
        torch.testing.assert_close(g[k], ref[k], rtol=rel, atol=rel * scale, msg=lambda m, k=k: f"grad {k}: {m}")


def _with_env(monkeypatch, no_ext: bool):
    monkeypatch.setenv(ENV_DISABLE, "1" if no_ext else "0")


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_and_cpp_compositing_agree(monkeypatch, dtype):
    scene = cluster_scene(dtype=dtype)
    scene["colors"] = scene["colors"][:, None].expand(-1, 16, -1) * 0.5  # SH, degree 3
    kw = dict(sh_degree=3, render_mode="RGB+ED", backgrounds=torch.full((2, 3), 0.3, dtype=dtype))
    _with_env(monkeypatch, no_ext=True)
    ref = _render_and_grads(scene, **kw)
    _with_env(monkeypatch, no_ext=False)
    out = _render_and_grads(scene, **kw)
    assert (ref[1] > 0.99).float().mean() > 0.15  # many saturated pixels: early stops are exercised
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(out[0], ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(out[1], ref[1], rtol=tol, atol=tol)
    _assert_grads_close(out[2], ref[2], 1e-3 if dtype == torch.float32 else 1e-9)


@needs_ext
def test_cpp_kernel_is_thread_count_invariant():
    scene = cluster_scene(seed=1, dtype=torch.float64)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _render_and_grads(scene)
        torch.set_num_threads(2)
        two = _render_and_grads(scene)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    _assert_grads_close(two[2], one[2], 1e-12)


def test_tile_size_does_not_change_the_image(one_thread):
    scene = cluster_scene(n=500, seed=2, dtype=torch.float64)
    a = rasterize(**scene, tile_size=16)
    b = rasterize(**scene, tile_size=8)
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)
    assert b[2]["tile_width"] == 12 and a[2]["tile_width"] == 6


def test_meta_and_retained_means2d_grad(one_thread):
    scene = cluster_scene(n=300, seed=3)
    colors, alphas, _, meta = _render_and_grads(scene)
    C, N = 2, 300
    assert meta["backend"] == "torch"
    assert meta["means2d"].shape == (C, N, 2) and meta["means2d"].grad is not None
    assert meta["means2d"].grad.abs().sum() > 0
    assert meta["radii"].shape == (C, N, 2) and meta["radii"].dtype == torch.int32
    assert meta["depths"].shape == (C, N) and meta["conics"].shape == (C, N, 3)
    assert colors.shape == (C, 80, 96, 3) and alphas.shape == (C, 80, 96, 1)
    # culled Gaussians get exactly zero 2D gradient
    culled = (meta["radii"] == 0).all(-1)
    assert not meta["means2d"].grad[culled].any()


def test_composite_impl_selection(monkeypatch):
    scene = cluster_scene(n=50, seed=4)
    c, a, meta = rasterize(**scene)
    M = 2 * 50
    args = (meta["means2d"].reshape(M, 2), meta["conics"].reshape(M, 3), scene["colors"].repeat(2, 1),
            meta["opacities"].reshape(M))
    from drrobot.render import isect_tiles

    bins = isect_tiles(meta["means2d"], meta["radii"], meta["depths"], 96, 80)
    with pytest.raises(ValueError, match="impl must be one of"):
        composite(*args, bins, impl="fast")
    _with_env(monkeypatch, no_ext=True)
    with pytest.raises(RuntimeError, match=r"C\+\+ compositing extension is unavailable"):
        composite(*args, bins, impl="cpp")
    fg, alpha = composite(*args, bins, impl="torch")
    torch.testing.assert_close(alpha, a)


# ------------------------------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_torch_backend_on_cuda_matches_cpu():
    cpu = cluster_scene(seed=5)
    gpu = cluster_scene(seed=5, device="cuda")
    ref = _render_and_grads(cpu, backend="torch")
    out = _render_and_grads(gpu, backend="torch")
    torch.testing.assert_close(out[0].cpu(), ref[0], rtol=1e-4, atol=1e-4)
    _assert_grads_close({k: v.cpu() for k, v in out[2].items()}, ref[2], 1e-3)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("kw", [dict(), dict(sh_degree=3, render_mode="RGB+ED"), dict(rasterize_mode="antialiased")])
def test_torch_backend_matches_gsplat_on_cuda(kw):
    """Tolerances as gsplat 1.5.3's own rasterize tests (images ~1e-4, gradients ~1e-3 relative)."""
    from drrobot.render import gsplat_backend

    if gsplat_backend.unavailable_reason():
        pytest.skip(gsplat_backend.unavailable_reason())
    scene = cluster_scene(n=5000, width=160, height=120, seed=6, device="cuda")
    if "sh_degree" in kw:
        scene["colors"] = scene["colors"][:, None].expand(-1, 16, -1).contiguous() * 0.5
    ours = _render_and_grads(scene, backend="torch", **kw)
    ref = _render_and_grads(scene, backend="gsplat", **kw)
    assert ref[3]["backend"] == "gsplat"
    assert torch.equal(ours[3]["radii"], ref[3]["radii"])
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-4, atol=1e-4)
    _assert_grads_close(ours[2], ref[2], 2e-3)
    torch.testing.assert_close(ours[3]["means2d"].grad, ref[3]["means2d"].grad, rtol=2e-3,
                               atol=2e-3 * ref[3]["means2d"].grad.abs().max().item())


def test_failed_extension_build_falls_back_with_a_warning(monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    from drrobot.render import extension

    def broken_load(*args, **kwargs):
        raise OSError("no compiler here")

    monkeypatch.setattr(cpp_extension, "load", broken_load)
    with pytest.warns(RuntimeWarning, match="using the pure-torch path"):
        assert extension._build.__wrapped__() is None


def test_a_build_lock_left_by_a_killed_build_is_removed_with_a_warning(tmp_path):
    lock = tmp_path / "lock"
    lock.touch()
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    with pytest.warns(RuntimeWarning, match="did not finish"):
        wait_for_other_build(lock, stale=600, poll=0.01)
    assert not lock.exists()


def test_a_build_in_progress_is_waited_for_and_its_lock_left_alone(tmp_path, capsys):
    lock = tmp_path / "lock"
    lock.touch()
    threading.Timer(0.3, lock.unlink).start()  # the other process finishes its build
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a live build's lock is not removed
        wait_for_other_build(lock, stale=600, poll=0.01)
    assert time.perf_counter() - start >= 0.25
    assert "waiting for another process" in capsys.readouterr().err
