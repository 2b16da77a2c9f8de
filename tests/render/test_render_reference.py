"""rasterize vs the brute-force float64 reference: images and every gradient to 1e-5."""

from __future__ import annotations

import pytest
import torch
from render_fixtures import composite_impl, one_thread  # noqa: F401  (fixtures)
from render_reference import reference_rasterize
from render_scenes import awkward_scene

from drrobot.render import rasterize

DIFF_ARGS = ("means", "quats", "scales", "opacities", "colors", "viewmats", "backgrounds")


def _run(fn, scene, **kw):
    """Render, backprop a random linear loss, return (colors, alphas, grads dict)."""
    args = {k: (v.detach().clone().requires_grad_(True) if k in DIFF_ARGS else v) for k, v in scene.items()}
    colors, alphas = fn(**args, **kw)[:2]
    g = torch.Generator().manual_seed(123)
    loss = (colors * torch.randn(colors.shape, generator=g, dtype=colors.dtype)).sum()
    loss = loss + (alphas * torch.randn(alphas.shape, generator=g, dtype=alphas.dtype)).sum()
    if loss.requires_grad:  # (the reference builds no graph when every Gaussian is culled)
        loss.backward()
    return colors.detach(), alphas.detach(), {k: args[k].grad for k in DIFF_ARGS if k in args}


def _compare(scene, **kw):
    ref_c, ref_a, ref_g = _run(reference_rasterize, scene, **kw)
    c, a, g = _run(rasterize, scene, **kw)
    torch.testing.assert_close(c, ref_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, ref_a, rtol=1e-5, atol=1e-5)
    assert set(g) == set(ref_g)
    for k in ref_g:
        if ref_g[k] is None:  # e.g. an empty scene: nothing reaches this input
            assert g[k] is None or not g[k].any(), k
            continue
        torch.testing.assert_close(g[k], ref_g[k], rtol=1e-5, atol=1e-5, msg=lambda m, k=k: f"grad {k}: {m}")
    return ref_c, ref_a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_awkward_scenes_match_reference(composite_impl, seed):
    scene = awkward_scene(seed)
    scene["backgrounds"] = torch.rand(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    ref_c, ref_a = _compare(scene)
    # the scene really exercises the awkward cases
    assert (ref_a > 0.999).any(), "no pixel behind the opaque stack"


@pytest.mark.parametrize(
    "kw",
    [dict(render_mode="RGB+ED"), dict(render_mode="D"), dict(eps2d=0.05), dict(near_plane=2.5, far_plane=3.5)],
    ids=["rgb+ed", "depth", "small-eps2d", "near-far"],
)
def test_modes_match_reference(composite_impl, kw):
    _compare(awkward_scene(3), **kw)


def test_antialiased_matches_reference(composite_impl):
    scene = awkward_scene(4)
    ref_c, ref_a, ref_g = _run(reference_rasterize, scene, antialiased=True)
    c, a, g = _run(rasterize, scene, rasterize_mode="antialiased")
    torch.testing.assert_close(c, ref_c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, ref_a, rtol=1e-5, atol=1e-5)
    for k in ref_g:
        torch.testing.assert_close(g[k], ref_g[k], rtol=1e-5, atol=1e-5)
    assert (c - rasterize(**scene)[0]).abs().max() > 1e-3  # compensation is really applied


@pytest.mark.parametrize("per_camera", [False, True])
def test_sh_degree3_matches_reference(composite_impl, per_camera):
    scene = awkward_scene(5)
    g = torch.Generator().manual_seed(5)
    N = scene["means"].shape[0]
    shape = (2, N, 16, 3) if per_camera else (N, 16, 3)
    scene["colors"] = torch.randn(shape, generator=g, dtype=torch.float64) * 0.4
    _compare(scene, sh_degree=3)
    _compare(scene, sh_degree=1)


def test_per_camera_colors_and_more_channels(composite_impl):
    scene = awkward_scene(6)
    N = scene["means"].shape[0]
    scene["colors"] = torch.rand(2, N, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    _compare(scene)


def test_empty_scene(composite_impl):
    scene = awkward_scene(0)
    for k in ("means", "quats", "scales", "opacities", "colors"):
        scene[k] = scene[k][:0]
    scene["backgrounds"] = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], dtype=torch.float64)
    c, a, meta = rasterize(**scene)
    assert c.shape == (2, 29, 37, 3) and a.shape == (2, 29, 37, 1)
    torch.testing.assert_close(c, scene["backgrounds"][:, None, None, :].expand_as(c))
    assert not a.any()
    assert meta["means2d"].shape == (2, 0, 2) and meta["radii"].shape == (2, 0, 2)
    _compare(scene)


def test_all_gaussians_culled(composite_impl):
    scene = awkward_scene(0)
    scene["means"] = scene["means"] * 0 + torch.tensor([0.0, 0.0, -10.0], dtype=torch.float64)  # behind cam 0
    scene["viewmats"] = scene["viewmats"][:1]
    scene["Ks"] = scene["Ks"][:1]
    c, a, meta = rasterize(**scene)
    assert not c.any() and not a.any() and not meta["radii"].any()
    _compare(scene)
