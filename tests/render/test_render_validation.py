"""Bad input: clear errors naming the argument, raised before any rendering work."""

from __future__ import annotations

import pytest
import torch
from render_scenes import awkward_scene

from drrobot.render import rasterize


@pytest.fixture
def scene():
    return awkward_scene(0, dtype=torch.float32)


def _with(scene, **changes):
    return {**scene, **changes}


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda s: dict(means=s["means"][:, :2]), ValueError, r"means must have shape \[N, 3\]"),
        (lambda s: dict(quats=s["quats"][:-1]), ValueError, r"quats must have shape \[N, 4\]"),
        (lambda s: dict(scales=s["scales"][None]), ValueError, r"scales must have shape"),
        (lambda s: dict(opacities=s["opacities"][:, None]), ValueError, r"opacities must have shape \[N\]"),
        (lambda s: dict(colors=s["colors"][:-2]), ValueError, r"colors must have shape"),
        (lambda s: dict(viewmats=s["viewmats"][:, :3]), ValueError, r"viewmats must have shape \[C, 4, 4\]"),
        (lambda s: dict(Ks=s["Ks"][:1]), ValueError, r"Ks must have shape \[C, 3, 3\] with C=2"),
        (lambda s: dict(backgrounds=torch.zeros(2, 4)), ValueError, r"backgrounds must have shape \[C, D\]"),
        (lambda s: dict(width=0), ValueError, r"width must be a positive int"),
        (lambda s: dict(height=-3), ValueError, r"height must be a positive int"),
        (lambda s: dict(width=12.5), ValueError, r"width must be a positive int"),
        (lambda s: dict(means=s["means"].tolist()), TypeError, r"means must be a torch.Tensor"),
        (lambda s: dict(opacities=s["opacities"].double()), TypeError, r"opacities has dtype"),
        (lambda s: dict(colors=s["colors"].long()), TypeError, r"colors must be a floating-point tensor"),
        (lambda s: dict(render_mode="RGBD"), ValueError, r"render_mode must be one of"),
        (lambda s: dict(backend="cuda"), ValueError, r"backend must be one of"),
        (lambda s: dict(near_plane=0.0), ValueError, r"near_plane"),
        (lambda s: dict(sh_degree=4), ValueError, r"colors must have shape|sh_degree"),
    ],
)
def test_bad_shapes_and_options(scene, change, error, match):
    with pytest.raises(error, match=match):
        rasterize(**_with(scene, **change(scene)))


def test_sh_checks(scene):
    N = scene["means"].shape[0]
    with pytest.raises(ValueError, match="sh_degree must be None or an int in 0..3"):
        rasterize(**_with(scene, colors=torch.zeros(N, 25, 3)), sh_degree=4)
    with pytest.raises(ValueError, match="K=4 SH coefficients, sh_degree=2 needs at least 9"):
        rasterize(**_with(scene, colors=torch.zeros(N, 4, 3)), sh_degree=2)
    with pytest.raises(ValueError, match=r"colors must have shape \[N, K, 3\]"):
        rasterize(**scene, sh_degree=0)  # plain RGB colours passed as SH


@pytest.mark.parametrize("name", ["means", "quats", "scales", "opacities", "colors", "viewmats", "Ks"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(scene, name, bad):
    t = scene[name].clone()
    t.view(-1)[1] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN or inf"):
        rasterize(**_with(scene, **{name: t}))


def test_zero_quaternion(scene):
    q = scene["quats"].clone()
    q[3] = 0
    with pytest.raises(ValueError, match="quats contains zero-norm"):
        rasterize(**_with(scene, quats=q))


def test_non_invertible_viewmat(scene):
    vm = scene["viewmats"].clone()
    vm[1, 2] = 0  # third row of the rotation zeroed
    with pytest.raises(ValueError, match=r"viewmats\[1\] is not invertible"):
        rasterize(**_with(scene, viewmats=vm))


@pytest.mark.parametrize(
    "edit",
    [
        lambda vm: vm[0, :3, :3].mul_(2.0),  # scaled
        lambda vm: vm[0, 0, 1].add_(0.3),  # sheared
        lambda vm: vm[0, 0].neg_(),  # reflection (det -1)
        lambda vm: vm[0, 3, 0].fill_(0.5),  # projective last row
    ],
    ids=["scaled", "sheared", "reflection", "last-row"],
)
def test_non_rigid_viewmat(scene, edit):
    vm = scene["viewmats"].clone()
    edit(vm)
    with pytest.raises(ValueError, match=r"viewmats\[0\] is not a rigid world->camera transform"):
        rasterize(**_with(scene, viewmats=vm))


def test_gsplat_backend_needs_cuda(scene):
    with pytest.raises(ValueError, match="backend='gsplat' needs CUDA tensors, but means is on cpu"):
        rasterize(**scene, backend="gsplat")


def test_validate_false_skips_checks(scene):
    vm = scene["viewmats"].clone()
    vm[0, :3, :3] *= 1.01  # slightly non-rigid: allowed when the caller opts out
    colors, alphas, _ = rasterize(**_with(scene, viewmats=vm), validate=False)
    assert torch.isfinite(colors).all() and alphas.shape == (2, 29, 37, 1)
