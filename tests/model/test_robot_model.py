"""RobotModel: rigid motion at initialisation, appearance identity, rendering and its gradients, joint checks."""

import warnings

import numpy as np
import pytest
import torch
from model_fixtures import cameras, make_model

from drrobot.model import RobotModel, project_points
from drrobot.nn import resolve_field_dtype


def test_fresh_model_moves_gaussians_rigidly_with_their_links():
    model = make_model(skinning={"prior_logit": 60.0})  # exactly one-hot in float32
    joints = torch.tensor([[0.4, -0.6, 1.1], [-2.5, 0.3, -0.2]])
    posed = model.pose_gaussians(joints)
    g = model.gaussians
    rel = posed.link_poses @ torch.linalg.inv(model.canonical_link_poses)  # [B, L, 4, 4]
    rel = rel[:, g.link_ids]  # [B, N, 4, 4]
    expected = (rel[..., :3, :3] @ g.means[..., None]).squeeze(-1) + rel[..., :3, 3]
    assert torch.allclose(posed.means, expected, atol=1e-5)
    canonical = model.pose_gaussians(model.canonical_joints[None])
    assert torch.allclose(canonical.means[0], g.means, atol=1e-5)


def test_appearance_deformation_is_identity_at_init_and_can_be_disabled():
    with_deform = make_model(seed=3)
    without = make_model(seed=3, appearance={"enabled": False})
    assert without.appearance is None and with_deform.appearance is not None
    without.gaussians.load_state_dict(with_deform.gaussians.state_dict())
    without.skinning.load_state_dict(with_deform.skinning.state_dict())
    joints = torch.tensor([[0.4, -0.6, 1.1]])
    a, b = with_deform.pose_gaussians(joints), without.pose_gaussians(joints)
    for name in ("means", "quats", "scales", "opacities", "sh"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    with torch.no_grad():  # a trained head changes appearance with the pose
        with_deform.appearance.trunk[-1].weight.normal_(0, 0.1)
    c = with_deform.pose_gaussians(torch.tensor([[0.4, -0.6, 1.1], [0.4, 0.6, -1.1]]))
    assert not torch.allclose(c.scales[0], c.scales[1]) and not torch.allclose(c.sh[0], c.sh[1])


def test_render_shapes_and_means2d(toy_model):
    viewmats, Ks = cameras(B=2)
    joints = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.8, -1.0]])
    out = toy_model.render(joints, viewmats, Ks, 32, 24, background=torch.ones(3), render_mode="RGB+ED")
    N = len(toy_model.gaussians)
    assert out.images.shape == (2, 2, 24, 32, 3) and out.alphas.shape == (2, 2, 24, 32, 1)
    assert out.depths.shape == (2, 2, 24, 32, 1) and out.means2d.shape == (2, 2, N, 2)
    assert out.alphas.max() > 0.5 and len(out.metas) == 2
    uv, depth, in_front = project_points(out.posed.means, viewmats, Ks)
    assert torch.allclose(uv, out.means2d, atol=1e-3)
    assert torch.allclose(depth, torch.stack([m["depths"] for m in out.metas]), atol=1e-5)
    assert not torch.allclose(out.images[0], out.images[1])  # the pose changes the picture


def test_render_is_differentiable_wrt_joints_and_cameras(toy_model):
    viewmats, Ks = cameras(B=1)
    viewmats.requires_grad_(True)
    joints = torch.tensor([[0.3, 0.4, -0.5]], requires_grad=True)
    out = toy_model.render(joints, viewmats, Ks, 32, 32, background=torch.zeros(3))
    target = torch.rand_like(out.images, generator=torch.Generator().manual_seed(0))
    (out.images - target).square().mean().backward()
    for grad in (joints.grad, viewmats.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert toy_model.gaussians.means.grad is not None


def test_rendered_features_are_composited_like_colours_in_the_same_pass(toy_model):
    """features=skinning weights: each pixel's link mixture sums to its alpha; the RGB is unchanged."""
    viewmats, Ks = cameras(B=2)
    joints = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.8, -1.0]])
    plain = toy_model.render(joints, viewmats, Ks, 32, 24, background=torch.ones(3), render_mode="RGB+ED")
    weights = toy_model.skinning_weights()  # [N, L]
    out = toy_model.render(joints, viewmats, Ks, 32, 24, background=torch.ones(3), render_mode="RGB+ED",
                           features=weights)  # fmt: skip
    assert out.features.shape == (2, 2, 24, 32, len(toy_model.link_names))
    assert torch.allclose(out.images, plain.images, atol=1e-5) and torch.allclose(out.depths, plain.depths, atol=1e-4)
    assert torch.allclose(out.features.sum(-1, keepdim=True), out.alphas, atol=1e-4)  # background adds 0
    links = out.features.argmax(-1)[out.alphas[..., 0] > 0.5]
    assert len(links.unique()) >= 3  # the links of the toy arm show up as separate regions
    out.features.square().sum().backward()
    assert toy_model.skinning.mlp[-1].weight.grad.abs().sum() > 0  # gradients reach the skinning field
    colors, alphas, _ = toy_model.render_canonical(viewmats[0], Ks[0], 32, 24, features=weights.detach())
    assert colors.shape == (2, 24, 32, 3 + len(toy_model.link_names))
    assert torch.allclose(colors[..., 3:].sum(-1, keepdim=True), alphas, atol=1e-4)


def test_rasterization_settings_come_from_the_config_unless_a_call_overrides_them():
    antialiased = make_model(seed=2)  # the default: antialiased, eps2d 0.05
    classic = make_model(seed=2, rasterize_mode="classic", eps2d=0.3)
    classic.load_state_dict(antialiased.state_dict())
    viewmats, Ks = cameras(B=1)
    joints = torch.tensor([[0.2, -0.3, 0.5]])
    with torch.no_grad():
        a = antialiased.render(joints, viewmats, Ks, 32, 32)
        b = classic.render(joints, viewmats, Ks, 32, 32, rasterize_mode="antialiased", eps2d=0.05)
        c = classic.render(joints, viewmats, Ks, 32, 32)
        canonical = antialiased.render_canonical(viewmats[0], Ks[0], 32, 32)[1]
        canonical_classic = classic.render_canonical(viewmats[0], Ks[0], 32, 32)[1]
    assert torch.equal(a.images, b.images) and torch.equal(a.alphas, b.alphas)
    # opacity compensation and a smaller blur: small Gaussians no longer spread over extra pixels
    assert a.alphas.sum() < 0.95 * c.alphas.sum() and canonical.sum() < 0.95 * canonical_classic.sum()
    with pytest.raises(ValueError, match="rasterize_mode"):
        make_model(n=50, rasterize_mode="mip")
    with pytest.raises(ValueError, match="eps2d"):
        make_model(n=50, eps2d=-1.0)


def test_joint_validation(toy_model):
    viewmats, Ks = cameras(B=1)
    with pytest.raises(ValueError, match="length 3"):
        toy_model.pose_gaussians(torch.zeros(1, 2))
    with pytest.raises(ValueError, match=r"\[B, J\]"):
        toy_model.pose_gaussians(torch.zeros(3))
    with pytest.raises(ValueError, match="non-finite.*elbow"):
        toy_model.pose_gaussians(torch.tensor([[0.0, 0.0, float("nan")]]))
    with pytest.raises(ValueError, match="viewmats"):
        toy_model.render(torch.zeros(2, 3), viewmats, Ks, 8, 8)


def test_out_of_limit_joints_are_clamped_with_a_warning(toy_model):
    inside = torch.tensor([[5.0, 1.57, -2.0]])  # yaw is continuous: never clamped
    outside = torch.tensor([[5.0, 3.0, -4.0]])  # shoulder and elbow past their limits
    with pytest.warns(UserWarning, match="shoulder, elbow"):
        clamped = toy_model.pose_gaussians(outside)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = toy_model.pose_gaussians(inside)
    assert torch.allclose(clamped.means, reference.means, atol=1e-6)


def test_out_of_limit_joints_rejected_with_error_policy():
    model = make_model(n=50, joint_limits="error")
    with pytest.raises(ValueError, match="outside their limits.*shoulder"):
        model.pose_gaussians(torch.tensor([[0.0, 3.0, 0.0]]))
    with pytest.raises(ValueError, match="joint_limits"):
        make_model(n=50, joint_limits="wrap")


def test_floating_base_moves_everything():
    model = make_model("toy_floating", n=200)
    joints = torch.zeros(1, model.joint_spec.dof)
    base = torch.as_tensor(model.joint_spec.default_base_pose(), dtype=torch.float32)[None]  # [1, 7]
    shifted = base.clone()
    shifted[:, :3] += torch.tensor([0.1, -0.2, 0.3])
    a, b = model.pose_gaussians(joints, base), model.pose_gaussians(joints, shifted)
    assert torch.allclose(b.means - a.means, torch.tensor([0.1, -0.2, 0.3]).expand_as(a.means), atol=1e-5)


def test_surface_link_ids_validated():
    points, links, colors = np.zeros((4, 3)), np.array([0, 1, 2, 99]), np.zeros((4, 3))
    with pytest.raises(ValueError, match="link ids"):
        RobotModel.from_surface("toy_arm", points, links, colors)


def test_wrongly_shaped_background_and_features_name_the_argument(toy_model):
    viewmats, Ks = cameras(2)
    joints = torch.zeros(2, len(toy_model.joint_spec.names))
    with pytest.raises(ValueError, match=r"background of shape \(4,\) does not broadcast to \(2, 2, 3\)"):
        toy_model.render(joints, viewmats, Ks, 32, 32, background=torch.zeros(4))
    n = len(toy_model.gaussians)
    with pytest.raises(ValueError, match=rf"features must be \[N={n}, F\]"):
        toy_model.render(joints, viewmats, Ks, 32, 32, features=torch.zeros(n + 1, 2))
    with pytest.raises(ValueError, match=rf"features of shape \(3, {n}, 2\) does not broadcast"):
        toy_model.render(joints, viewmats, Ks, 32, 32, features=torch.zeros(3, n, 2))


def test_first_build_of_the_cpu_kernel_is_announced(monkeypatch, capsys):
    import torch.utils.cpp_extension

    from drrobot.render import extension

    monkeypatch.setattr(extension, "_already_built", lambda directory: False)
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda **kwargs: "module")
    extension._build.cache_clear()
    try:
        assert extension._build() == "module"
    finally:
        extension._build.cache_clear()
    assert "compiling the C++ CPU kernels" in capsys.readouterr().err


def test_bfloat16_fields_agree_with_float32_and_keep_gradients():
    model = make_model(seed=5)
    with torch.no_grad():  # trained-looking heads, so the fields' outputs are not all zero
        model.skinning.mlp[-1].weight.normal_(0, 0.3)
        model.appearance.trunk[-1].weight.normal_(0, 0.1)
    joints = torch.tensor([[0.4, -0.6, 1.1]])
    exact = model.pose_gaussians(joints)
    model.set_field_dtype("bfloat16")
    fast = model.pose_gaussians(joints)
    for name in ("weights", "means", "scales", "opacities", "sh"):
        a, b = getattr(exact, name), getattr(fast, name)
        assert b.dtype == torch.float32, name  # outputs are cast back: the rest of the pipeline stays float32
        assert torch.allclose(a, b, atol=3e-2), name
        assert not torch.equal(a, b), name  # the products did run in bf16
    fast.means.sum().backward()
    assert model.skinning.mlp[0].weight.grad.abs().sum() > 0 and model.skinning.mlp[0].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="float16"):
        model.set_field_dtype("float16")


def test_field_precision_auto_is_bfloat16_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_field_dtype("auto", cpu) == "bfloat16"
    assert resolve_field_dtype("float32", cpu) == "float32"  # an explicit choice wins
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert resolve_field_dtype("auto", cpu) == "float32"
    assert resolve_field_dtype("bfloat16", cpu) == "bfloat16"
