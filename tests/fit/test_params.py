"""Pose parameters: joints stay inside their limits and keep their gradients; shared cameras; projection checks."""

import pytest
import torch
from fit_helpers import surface_model, toy_camera

from drrobot.fit.params import LearningRates, PoseParameters
from drrobot.model import project_points


def test_joints_stay_inside_limits_with_live_gradients(toy_model):
    spec = toy_model.joint_spec  # yaw is continuous, shoulder and elbow are limited
    cam = toy_camera()
    start = torch.tensor([[5.0, 1.57, -2.0]])  # yaw past pi, joints at their limits
    params = PoseParameters(spec, start, cam.viewmats[None, None], cam.Ks[None, None], (cam.width, cam.height))
    joints = params.joints()
    assert float(joints[0, 0]) == pytest.approx(5.0)  # continuous: as given
    lower, upper = torch.as_tensor(spec.lower[1:]), torch.as_tensor(spec.upper[1:])
    assert ((joints[0, 1:] > lower) & (joints[0, 1:] < upper)).all()  # pulled just inside
    with torch.no_grad():
        params.z[0, 1:] = 50.0  # far past the limit in the unconstrained space
    assert (params.joints()[0, 1:] <= upper + 1e-6).all()
    (params.joints() * torch.tensor([1.0, 1.0, 1.0])).sum().backward()
    assert params.z.grad[0, 0] != 0


def test_shared_camera_moves_every_hypothesis_alike(toy_model):
    cam = toy_camera()
    B = 3
    params = PoseParameters(toy_model.joint_spec, torch.zeros(B, 3), cam.viewmats.expand(B, 1, 4, 4),
                            cam.Ks.expand(B, 1, 3, 3), (cam.width, cam.height), shared_camera=True)  # fmt: skip
    with torch.no_grad():
        params.camera.shift[0] = torch.tensor([0.05, 0.0, 0.1])
    viewmats = params.viewmats()
    assert viewmats.shape == (B, 1, 4, 4) and torch.allclose(viewmats[0], viewmats[2])
    names = {g["name"] for g in params.param_groups(LearningRates())}
    assert names == {"joints", "color", "rotation", "shift"}


def test_project_points_checks_shapes_and_flags_points_behind():
    viewmats = torch.eye(4).expand(1, 2, 4, 4)
    Ks = torch.tensor([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]).expand(1, 2, 3, 3)
    points = torch.tensor([[[0.0, 0.0, 2.0], [0.0, 0.0, -1.0]]])
    uv, depth, in_front = project_points(points, viewmats, Ks)
    assert torch.allclose(uv[0, 0, 0], torch.tensor([50.0, 50.0]))
    assert in_front[0, 0].tolist() == [True, False] and torch.isfinite(uv).all()
    with pytest.raises(ValueError, match="points must be"):
        project_points(points[0], viewmats, Ks)
    with pytest.raises(ValueError, match="Ks must be"):
        project_points(points, viewmats, Ks[:, :1])


def test_render_can_skip_the_appearance_field():
    model = surface_model("toy_arm", points=300, appearance=True)
    with torch.no_grad():
        for p in model.appearance.trunk[-1].parameters():
            p.normal_(0, 0.5)  # a field that changes the look
    cam = toy_camera(32, 24)
    joints = torch.tensor([[0.3, 0.2, -0.4]])
    args = (joints, cam.viewmats[None, None], cam.Ks[None, None], 32, 24)
    with_field, without = model.render(*args), model.render(*args, appearance=False)
    field, model.appearance = model.appearance, None
    plain = model.render(*args)
    model.appearance = field
    assert not torch.allclose(with_field.images, without.images)
    assert torch.allclose(without.images, plain.images)
