"""Geometry stage, SH and tile binning vs gsplat's CPU-runnable pure-torch reference."""

from __future__ import annotations

import math

import pytest
import torch
from render_reference import intrinsics, look_at

from drrobot.render import isect_tiles, project_gaussians, quat_scale_to_covar, sh_colors, spherical_harmonics
from drrobot.render.extension import load_extension

gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl")


def _random_gaussians(seed: int, N: int = 400, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g, dtype=dtype) * 1.5  # many behind / beside the cameras
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.randn(N, 3, generator=g, dtype=dtype) - 2.5)
    scales[:10, 1:] = 1e-5  # very thin
    scales[10:15] = 3.0  # very large
    opacities = torch.rand(N, generator=g, dtype=dtype)
    return means, quats, scales, opacities


def _cameras(width, height, dtype=torch.float64):
    viewmats = torch.stack([look_at((0.0, 0.0, -4.0), (0.0, 0.0, 0.0)), look_at((3.0, -1.5, -2.0), (0.2, 0.1, 0.0)),
                            look_at((0.5, 2.5, 1.0), (0.0, 0.0, 0.0))]).to(dtype)
    Ks = torch.stack([intrinsics(width, height, 60.0), intrinsics(width, height, 75.0),
                      intrinsics(width, height, 40.0)]).to(dtype)
    Ks[2, 0, 2] += 7.0  # off-centre principal point
    return viewmats, Ks


def test_covariance_matches_gsplat():
    means, quats, scales, _ = _random_gaussians(0)
    ref, _ = gsplat_torch._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    torch.testing.assert_close(quat_scale_to_covar(quats, scales), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_projection_matches_gsplat(seed, dtype):
    W, H = 96, 64
    means, quats, scales, _ = _random_gaussians(seed, dtype=dtype)
    viewmats, Ks = _cameras(W, H, dtype)
    covars = quat_scale_to_covar(quats, scales)
    radii_r, means2d_r, depths_r, conics_r, comp_r = gsplat_torch._fully_fused_projection(
        means, covars, viewmats, Ks, W, H, eps2d=0.3, near_plane=0.01, far_plane=100.0, calc_compensations=True
    )
    p = project_gaussians(means, covars, viewmats, Ks, W, H, eps2d=0.3, near_plane=0.01, far_plane=100.0,
                          calc_compensations=True)
    assert torch.equal(p.radii, radii_r)
    valid = (p.radii > 0).all(-1)
    assert 0.2 < valid.float().mean() < 0.95  # both culled and visible Gaussians are tested
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(p.means2d[valid], means2d_r[valid], **tol)
    torch.testing.assert_close(p.depths, depths_r, **tol)
    torch.testing.assert_close(p.conics[valid], conics_r[valid], **tol)
    # sqrt(det(cov2d) / det(cov2d + eps2d)) amplifies float32 cancellation for near-degenerate (thin) ones
    comp_tol = dict(rtol=1e-4, atol=5e-3) if dtype == torch.float32 else tol
    torch.testing.assert_close(p.compensations[valid], comp_r[valid], **comp_tol)


def test_projection_gradients_match_gsplat():
    W, H = 80, 60
    means, quats, scales, _ = _random_gaussians(3)
    viewmats, Ks = _cameras(W, H)
    g = torch.Generator().manual_seed(3)
    outs = []
    for fn in ("ours", "gsplat"):
        m, q, s, v = (t.clone().requires_grad_(True) for t in (means, quats, scales, viewmats))
        cov = quat_scale_to_covar(q, s)
        if fn == "ours":
            p = project_gaussians(m, cov, v, Ks, W, H)
            radii, means2d, depths, conics = p.radii, p.means2d, p.depths, p.conics
        else:
            radii, means2d, depths, conics, _ = gsplat_torch._fully_fused_projection(m, cov, v, Ks, W, H)
        valid = (radii > 0).all(-1)
        g.manual_seed(4)
        loss = ((means2d * torch.randn(means2d.shape, generator=g, dtype=means2d.dtype)).sum(-1) * valid).sum()
        loss = loss + ((conics * torch.randn(conics.shape, generator=g, dtype=conics.dtype)).sum(-1) * valid).sum()
        loss = loss + (depths * torch.randn(depths.shape, generator=g, dtype=depths.dtype) * valid).sum()
        outs.append(torch.autograd.grad(loss, (m, q, s, v)))
    for ours, ref in zip(*outs):
        torch.testing.assert_close(ours, ref, rtol=1e-8, atol=1e-8)


def test_opacity_aware_radii():
    """With opacities, radii shrink to the alpha >= 1/255 ellipse (gsplat CUDA) and faint Gaussians go."""
    W, H = 96, 64
    means, quats, scales, opac = _random_gaussians(5)
    viewmats, Ks = _cameras(W, H)
    cov = quat_scale_to_covar(quats, scales)
    full = project_gaussians(means, cov, viewmats, Ks, W, H)
    tight = project_gaussians(means, cov, viewmats, Ks, W, H, opacities=opac)
    assert (tight.radii <= full.radii).all()
    assert not tight.radii[:, opac < 1 / 255].any()
    extend = torch.sqrt(2 * torch.log(opac * 255)).clamp(max=3.33)
    valid = (tight.radii > 0).all(-1)
    c00 = 1 / (tight.conics[..., 0] - tight.conics[..., 1] ** 2 / tight.conics[..., 2])  # cov2d[0, 0]
    expect = torch.ceil(extend * c00.sqrt())
    torch.testing.assert_close(tight.radii[..., 0][valid].double(), expect[valid])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g, dtype=torch.float64) * 3
    coeffs = torch.randn(500, 16, 3, generator=g, dtype=torch.float64)
    ref = gsplat_torch._spherical_harmonics(degree, dirs, coeffs)
    torch.testing.assert_close(spherical_harmonics(degree, dirs, coeffs), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["torch", "cpp"])
def test_isect_tiles_matches_gsplat(impl):
    if impl == "cpp" and load_extension() is None:
        pytest.skip("C++ rendering extension unavailable")
    W, H, ts = 70, 45, 16  # partial tiles on both axes
    means, quats, scales, opac = _random_gaussians(6, N=150)
    viewmats, Ks = _cameras(W, H)
    p = project_gaussians(means, quat_scale_to_covar(quats, scales), viewmats, Ks, W, H, opacities=opac)
    bins = isect_tiles(p.means2d, p.radii, p.depths, W, H, ts, impl=impl)
    tw, th = math.ceil(W / ts), math.ceil(H / ts)
    tiles_per_gauss, isect_ids, flatten_ids = gsplat_torch._isect_tiles(p.means2d, p.radii, p.depths, ts, tw, th)
    offsets = gsplat_torch._isect_offset_encode(isect_ids, 3, tw, th)
    assert torch.equal(bins.tiles_per_gauss, tiles_per_gauss.long())
    assert torch.equal(bins.flatten_ids, flatten_ids.long())
    assert torch.equal(bins.offsets[:-1], offsets.flatten().long())
    assert bins.offsets[-1] == flatten_ids.numel() > 0


needs_ext = pytest.mark.skipif(load_extension() is None, reason="C++ rendering extension unavailable")


def _project_both(dtype, seed, calc_compensations, opacities):
    """Values and input gradients of the fused C++ projection and of its torch twin, for one random loss on
    every output (culled entries included)."""
    W, H = 96, 64
    means, quats, scales, opac = _random_gaussians(seed, dtype=dtype)
    viewmats, Ks = _cameras(W, H, dtype)
    covars = quat_scale_to_covar(quats, scales)
    results = []
    for impl in ("cpp", "torch"):
        m, cov, v = (t.clone().requires_grad_(True) for t in (means, covars, viewmats))
        p = project_gaussians(m, cov, v, Ks, W, H, eps2d=0.3, near_plane=0.01, far_plane=100.0,
                              opacities=opac if opacities else None, calc_compensations=calc_compensations, impl=impl)
        g = torch.Generator().manual_seed(seed + 100)
        outputs = [p.means2d, p.conics, p.depths] + ([p.compensations] if calc_compensations else [])
        loss = sum((out * torch.randn(out.shape, generator=g, dtype=dtype)).sum() for out in outputs)
        results.append((p, torch.autograd.grad(loss, (m, cov, v))))
    return results


@needs_ext
@pytest.mark.parametrize("calc_compensations,opacities", [(False, False), (True, True)])
def test_fused_projection_matches_its_torch_twin_float64(calc_compensations, opacities):
    (fused, fused_grads), (twin, twin_grads) = _project_both(torch.float64, 7, calc_compensations, opacities)
    assert torch.equal(fused.radii, twin.radii)
    assert 0.2 < (fused.radii > 0).all(-1).float().mean() < 0.95  # culled and visible Gaussians both present
    for name in ("means2d", "conics", "depths") + (("compensations",) if calc_compensations else ()):
        torch.testing.assert_close(getattr(fused, name), getattr(twin, name), rtol=1e-10, atol=1e-10, msg=name)
    # The needle-thin Gaussians' covariance gradients go through nearly singular 2D covariances, which amplify
    # float64 rounding ~1e8-fold: on an AVX-512 host (other instructions, e.g. fused multiply-adds, in one of the
    # two) one of them differed by 1.2e-7 relative, so gradients are compared to 1e-6 (float32 errors are ~1e-3).
    for name, a, b in zip(("means", "covars", "viewmats"), fused_grads, twin_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8, msg=lambda m, name=name: f"d/d{name}: {m}")


@needs_ext
def test_fused_projection_matches_its_torch_twin_float32():
    (fused, fused_grads), (twin, twin_grads) = _project_both(torch.float32, 8, True, True)
    assert (fused.radii != twin.radii).float().mean() < 0.01  # ceil() at a float32 rounding edge, rarely
    visible = (fused.radii > 0).all(-1) & (twin.radii > 0).all(-1)
    for name in ("means2d", "conics", "depths"):
        torch.testing.assert_close(getattr(fused, name)[visible], getattr(twin, name)[visible], rtol=1e-4, atol=1e-4)
    # the first 10 are needle-thin (1e-5): float32 cancellation in their covariances differs with the order of
    # operations (the float64 test covers them)
    rows = (slice(None), slice(10, None), slice(None))  # means, covars (not the needles), viewmats
    for a, b, keep in zip(fused_grads, twin_grads, rows):
        s = b[keep].abs().max()
        torch.testing.assert_close(a[keep] / s, b[keep] / s, rtol=1e-3, atol=1e-5)


@needs_ext
def test_fused_projection_is_used_where_it_applies():
    W, H = 32, 24
    means, quats, scales, _ = _random_gaussians(9, N=50)
    viewmats, Ks = _cameras(W, H)
    covars = quat_scale_to_covar(quats, scales)
    focal = Ks.clone().requires_grad_(True)  # a learnable focal length: only the torch twin differentiates Ks
    p = project_gaussians(means, covars, viewmats, focal, W, H)
    p.means2d.sum().backward()
    assert focal.grad is not None and focal.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="impl='cpp' needs"):
        project_gaussians(means, covars, viewmats, focal, W, H, impl="cpp")
    with pytest.raises(ValueError, match="impl must be one of"):
        project_gaussians(means, covars, viewmats, Ks, W, H, impl="cuda")


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_covariances_match_their_torch_twin(dtype):
    _, quats, scales, _ = _random_gaussians(10, dtype=dtype)
    results = []
    for impl in ("cpp", "torch"):
        q, s = quats.clone().requires_grad_(True), scales.clone().requires_grad_(True)
        covars = quat_scale_to_covar(q, s, impl=impl)
        weights = torch.randn(covars.shape, generator=torch.Generator().manual_seed(11), dtype=dtype)
        results.append((covars, *torch.autograd.grad((covars * weights).sum(), (q, s))))
    rtol = 1e-5 if dtype == torch.float32 else 1e-12  # float32: other operation orders, errors ~eps * the largest
    for name, fused, twin in zip(("covars", "d/dquats", "d/dscales"), *results):
        torch.testing.assert_close(fused, twin, rtol=rtol, atol=rtol * float(twin.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")  # fmt: skip


@needs_ext
def test_fused_covariances_keep_batch_shapes_and_reject_what_they_cannot_do():
    _, quats, scales, _ = _random_gaussians(12, N=24)
    fused = quat_scale_to_covar(quats.reshape(2, 12, 4), scales.reshape(2, 12, 3))  # "auto": the C++ loop
    assert fused.shape == (2, 12, 3, 3)
    torch.testing.assert_close(fused, quat_scale_to_covar(quats, scales, impl="torch").reshape(2, 12, 3, 3))
    with pytest.raises(ValueError, match="impl='cpp' needs"):
        quat_scale_to_covar(quats, scales[:1].expand(24, 3)[:12], impl="cpp")
    with pytest.raises(ValueError, match="impl must be one of"):
        quat_scale_to_covar(quats, scales, impl="cuda")


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_tile_binning_matches_its_torch_twin(dtype):
    """Two images, Gaussians partly off-screen and culled, and ties in depth (broken by index in both)."""
    W, H, ts = 83, 50, 8
    g = torch.Generator().manual_seed(13)
    means2d = (torch.rand(2, 300, 2, generator=g, dtype=dtype) * 1.4 - 0.2) * torch.tensor([W, H], dtype=dtype)
    radii = torch.randint(0, 12, (2, 300, 2), generator=g, dtype=torch.int32)
    depths = torch.randint(1, 20, (2, 300), generator=g).to(dtype)  # many equal depths
    fused = isect_tiles(means2d, radii, depths, W, H, ts, impl="cpp")
    twin = isect_tiles(means2d, radii, depths, W, H, ts, impl="torch")
    assert fused.flatten_ids.numel() > 1000
    for name in ("offsets", "flatten_ids", "tiles_per_gauss"):
        assert torch.equal(getattr(fused, name), getattr(twin, name)), name
    with pytest.raises(ValueError, match="impl must be"):
        isect_tiles(means2d, radii, depths, W, H, ts, impl="cuda")


@needs_ext
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("per_camera", [False, True])
def test_fused_sh_colours_match_their_torch_twin_with_gradients(degree, per_camera):
    """Values and gradients to means, coefficients and cameras; some colours clamped at 0."""
    g = torch.Generator().manual_seed(degree)
    means = torch.randn(60, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    shape = (3, 60, 16, 3) if per_camera else (60, 16, 3)
    coeffs = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.6).requires_grad_(True)
    viewmats, _ = _cameras(40, 30)  # [3, 4, 4]
    viewmats = viewmats.double().requires_grad_(True)
    weights = torch.randn(3, 60, 3, generator=g, dtype=torch.float64)
    fused, twin = (sh_colors(means, coeffs, viewmats, degree, impl=impl) for impl in ("cpp", "torch"))
    torch.testing.assert_close(fused, twin, rtol=0, atol=1e-12)
    if degree > 0:
        assert 0.05 < (twin == 0).double().mean() < 0.6
        inputs = (means, coeffs, viewmats)
        for got, want in zip(torch.autograd.grad((fused * weights).sum(), inputs),
                             torch.autograd.grad((twin * weights).sum(), inputs)):  # fmt: skip
            torch.testing.assert_close(got, want, rtol=0, atol=1e-11)
