"""Cameras: torch look-at against the dataset's numpy one, intrinsics, resizing, the learnable correction."""

import numpy as np
import pytest
import torch

from drrobot.data.cameras import look_at as look_at_numpy
from drrobot.fit.cameras import CameraDelta, Cameras, intrinsics_matrix, look_at, rotation_6d_to_matrix


def test_look_at_matches_the_dataset_cameras():
    eye, target = np.array([1.2, -0.4, 0.9]), np.array([0.1, 0.0, 0.3])
    ours = look_at(torch.tensor(eye), torch.tensor(target)).double().numpy()
    assert np.allclose(ours, look_at_numpy(eye, target), atol=1e-6)
    cam = ours[:3, :3] @ target + ours[:3, 3]
    assert cam[0] == pytest.approx(0, abs=1e-6) and cam[1] == pytest.approx(0, abs=1e-6) and cam[2] > 0


def test_look_at_roll_turns_the_image_and_parallel_up_is_an_error():
    eye, target = torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 0.0, 0.5])
    rolled = look_at(eye, target, roll=torch.tensor(np.pi / 2))
    plain = look_at(eye, target)
    assert torch.allclose(rolled[0, :3], plain[1, :3], atol=1e-6)  # image x now where image y was
    with pytest.raises(ValueError, match="parallel"):
        look_at(torch.tensor([0.0, 0.0, 2.0]), torch.zeros(3))


def test_intrinsics_resize_and_validation():
    cams = Cameras.from_intrinsics(400.0, 420.0, 320.0, 240.0, 640, 480)
    small = cams.resized(160, 120)
    assert torch.allclose(small.Ks, torch.tensor([[100.0, 0, 80], [0, 105, 60], [0, 0, 1]]))
    fov = Cameras.from_fov(90.0, 100, 50)
    assert fov.Ks[1, 1] == pytest.approx(25.0) and fov.Ks[0, 2] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="positive"):
        intrinsics_matrix(0.0, 400.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="batch shape"):
        Cameras(torch.eye(4).expand(2, 4, 4), torch.eye(3), 10, 10)


def test_camera_delta_is_identity_at_start_and_differentiable():
    viewmats = look_at(torch.tensor([[1.5, 0.2, 0.8], [0.3, 1.4, 0.6]]), torch.zeros(2, 3))[:, None]  # [2, 1, 4, 4]
    delta = CameraDelta(2, pivots=torch.tensor([[0.0, 0.0, 0.3]] * 2))
    assert torch.allclose(delta(viewmats), viewmats, atol=1e-6)
    with torch.no_grad():
        delta.shift[0, 2] = np.log(2.0)  # twice as far: the pivot's depth doubles, it stays on its ray
    moved = delta(viewmats)
    pivot = torch.tensor([0.0, 0.0, 0.3, 1.0])
    before, after = viewmats[0, 0] @ pivot, moved[0, 0] @ pivot
    assert float(after[2].detach()) == pytest.approx(2 * float(before[2]), rel=1e-5)
    assert torch.allclose(after[:2] / after[2], before[:2] / before[2], atol=1e-6)
    moved.sum().backward()
    assert delta.rotation.grad.abs().sum() > 0 and delta.shift.grad.abs().sum() > 0


def test_rotation_6d_gives_rotations():
    R = rotation_6d_to_matrix(torch.randn(5, 6))
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5), atol=1e-5)
