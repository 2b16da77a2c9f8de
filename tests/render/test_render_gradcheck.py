"""Finite-difference gradient checks (float64) of rasterize w.r.t. every differentiable input."""

from __future__ import annotations

import pytest
import torch
from render_fixtures import composite_impl, one_thread  # noqa: F401  (fixtures)
from render_scenes import awkward_scene

from drrobot.render import rasterize


def _scene(sh: bool):
    s = awkward_scene(seed=11, n_random=5, width=21, height=18)
    # break the equal-depth tie: moving either Gaussian of the pair in depth swaps their order, a jump
    # finite differences cannot see through (the reference tests cover ties)
    s["means"][-4, 2] += 0.05
    if sh:
        g = torch.Generator().manual_seed(11)
        s["colors"] = torch.randn(s["means"].shape[0], 16, 3, generator=g, dtype=torch.float64) * 0.3
    return s


def _loss_fn(scene, name, **kw):
    """x -> scalar random projection of (colors, alphas), with scene[name] replaced by x."""
    g = torch.Generator().manual_seed(7)
    C, H, W = scene["viewmats"].shape[0], scene["height"], scene["width"]
    D = 4 if kw.get("render_mode") == "RGB+ED" else 3
    w_c = torch.randn(C, H, W, D, generator=g, dtype=torch.float64)
    w_a = torch.randn(C, H, W, 1, generator=g, dtype=torch.float64)

    def f(x):
        colors, alphas, _ = rasterize(**{**scene, name: x}, **kw)
        return (colors * w_c).sum() + (alphas * w_a).sum()

    return f


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors"])
def test_gradcheck_gaussian_params(composite_impl, name):
    scene = _scene(sh=False)
    x = scene[name].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(_loss_fn(scene, name), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_sh_coefficients_and_depth(composite_impl):
    scene = _scene(sh=True)
    x = scene["colors"].clone().requires_grad_(True)
    f = _loss_fn(scene, "colors", sh_degree=3, render_mode="RGB+ED")
    # 672 SH inputs: check random directions (fast mode) rather than the full Jacobian
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)
    m = scene["means"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(_loss_fn(scene, "means", sh_degree=3, render_mode="RGB+ED"), (m,),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def _hat(xi):  # [C, 6] (rotation, translation) -> [C, 4, 4] se(3) matrices
    w, v = xi[:, :3], xi[:, 3:]
    M = torch.zeros(xi.shape[0], 4, 4, dtype=xi.dtype)
    M[:, 0, 1], M[:, 0, 2], M[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    M = M - M.transpose(1, 2)
    M[:, :3, 3] = v
    return M


@pytest.mark.parametrize("sh", [False, True])
def test_gradcheck_camera_pose(composite_impl, sh):
    """Perturb the camera by exp(xi) on the left, as a pose optimiser does."""
    scene = _scene(sh)
    base = scene["viewmats"]
    kw = dict(sh_degree=3) if sh else {}
    f_vm = _loss_fn(scene, "viewmats", **kw)

    def f(xi):
        return f_vm(torch.linalg.matrix_exp(_hat(xi)) @ base)

    xi = torch.zeros(base.shape[0], 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (xi,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_antialiased_gradients_stay_finite_for_flat_gaussians():
    """A Gaussian with a zero scale seen edge-on projects to a degenerate 2D covariance (compensation 0);
    plain autograd of the compensation's sqrt gave infinite gradients there and training diverged."""
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0]], requires_grad=True)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    scales = torch.tensor([[0.0, 0.05, 0.05], [0.02, 0.02, 0.02]], requires_grad=True)  # first: flat, seen edge-on
    opacities = torch.tensor([0.9, 0.9], requires_grad=True)
    colors = torch.ones(2, 3)
    K = torch.tensor([[[30.0, 0.0, 16.0], [0.0, 30.0, 16.0], [0.0, 0.0, 1.0]]])
    for eps2d in (0.0, 0.1):
        rendered, alphas, meta = rasterize(means, quats, scales, opacities, colors, torch.eye(4)[None], K, 32, 32,
                                           eps2d=eps2d, rasterize_mode="antialiased")  # fmt: skip
        (rendered.sum() + alphas.sum()).backward()
        for tensor in (means, scales, opacities):
            assert torch.isfinite(tensor.grad).all(), (eps2d, tensor.grad)
            tensor.grad = None
