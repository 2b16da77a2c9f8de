"""Keypoint detections settle kinematic twins: the points a twin moves say which side the robot is on."""

import dataclasses

import pytest
import torch
from fit_helpers import DARK_BACKGROUND, render_frames, surface_model
from test_fit import observation
from test_twins import SHOULDER, ZYZ_ARM, zyz_camera

from drrobot.fit import FitConfig, TrackConfig
from drrobot.fit.objectives import Keypoints, link_points
from drrobot.fit.optimize import FitResult
from drrobot.fit import solve
from drrobot.fit.solve import track
from drrobot.fit.twin_keypoints import keypoint_verdicts
from drrobot.fit.twins import kinematic_twins
from drrobot.model import project_points

RED_BOX = '<geom type="box" size="0.05 0.04 0.05" pos="0.09 0 0.12" rgba="0.9 0.1 0.1 1"/>'
TRUTH = torch.tensor([0.6, 0.5, -0.8, 0.7])


@pytest.fixture(scope="module")
def symmetric_model(tmp_path_factory):
    """The z-y-z arm without the red box: its shoulder twins look the same to the image."""
    path = tmp_path_factory.mktemp("zyz") / "zyz_symmetric.xml"
    path.write_text(ZYZ_ARM.replace(RED_BOX, ""))
    return surface_model(str(path), points=1200)


def detections(model, joints: torch.Tensor, noise: float = 0.0, seed: int = 0) -> list[Keypoints]:
    """Per frame of joints [T, J]: the link origins of link1 to link4 and a point on link1's side (where the red box
    was), detected where `joints` put them (plus Gaussian noise of `noise` px), as the zyz camera sees them."""
    names = ["link1", "link1", "link2", "link3", "link4"]
    link_ids = torch.tensor([model.link_names.index(n) for n in names])
    local = torch.tensor([[0.0, 0.0, 0.0], [0.09, 0.0, 0.12], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    camera = zyz_camera()
    points = link_points(model.kinematics.link_poses(joints), link_ids, local)  # [T, K, 3]
    T = len(joints)
    uv = project_points(points, camera.viewmats.expand(T, 1, 4, 4), camera.Ks.expand(T, 1, 3, 3))[0]  # [T, 1, K, 2]
    uv = uv + noise * torch.randn(uv.shape, generator=torch.Generator().manual_seed(seed))
    return [Keypoints(link_ids, local, uv[t][None], torch.ones(1, 1, len(names), dtype=torch.bool)) for t in range(T)]


def sequence(model, frames: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The truth [T, J] (joint c moving) and its shoulder twin [T, J]."""
    truth = TRUTH.repeat(frames, 1)
    truth[:, 2] = torch.linspace(-0.8, -0.5, frames)
    return truth, torch.stack([kinematic_twins(model.kinematics, j, [SHOULDER])[0] for j in truth])


def verdict(model, track_joints, twin_joints, found) -> int:
    camera = zyz_camera()
    T = len(track_joints)
    result = keypoint_verdicts(model, track_joints, twin_joints[None], camera.viewmats.expand(T, 1, 4, 4),
                               camera.Ks.expand(T, 1, 3, 3), found, camera.width)  # fmt: skip
    return int(result.verdicts[0])


def test_the_detections_reject_the_twin_of_the_truth_and_prefer_the_truth_over_its_twin(symmetric_model):
    truth, twin = sequence(symmetric_model)
    found = detections(symmetric_model, truth, noise=1.0)
    assert verdict(symmetric_model, truth, twin, found) == -1
    assert verdict(symmetric_model, twin, truth, found) == 1


def test_detections_that_side_with_neither_leave_the_twins_undecided(symmetric_model):
    truth, twin = sequence(symmetric_model)
    half = detections(symmetric_model, truth[:3]) + detections(symmetric_model, twin[3:])  # split: no 75%
    assert verdict(symmetric_model, truth, twin, half) == 0
    few = [*detections(symmetric_model, truth[:2]), None, None, None, None]  # 2 frames detected: too few
    assert verdict(symmetric_model, twin, truth, few) == 0
    near, far = detections(symmetric_model, truth), detections(symmetric_model, twin)
    between = [dataclasses.replace(a, uv=0.55 * a.uv + 0.45 * b.uv) for a, b in zip(near, far)]  # a collapsed pair
    assert verdict(symmetric_model, twin, truth, between) == 0  # nearer the truth at every frame, but not clearly


def test_a_track_started_on_the_wrong_twin_follows_the_detections_without_asking_the_image(symmetric_model,
                                                                                           monkeypatch):  # fmt: skip
    truth, twin = sequence(symmetric_model)
    camera = zyz_camera()
    frames = [observation(f) for f in render_frames(symmetric_model, truth, camera, DARK_BACKGROUND)]
    start = FitResult(twin[:1], camera.viewmats[None, None], camera.Ks[None, None], None, torch.zeros(1), {}, [], 0)
    config = TrackConfig(fit=FitConfig(steps=(8,), scales=(1.0,), optimizer="lbfgs"), refine_camera=False, keyframes=4)
    judged = []  # frames the image judged twins at: by the limit rule, by the vote
    limit_rule, vote = solve._refined_losses, solve.image_verdicts
    monkeypatch.setattr(solve, "_refined_losses", lambda model, obs, first, t, *rest: judged.append(t) or
                        limit_rule(model, obs, first, t, *rest))  # fmt: skip
    monkeypatch.setattr(solve, "image_verdicts", lambda model, observations, *rest: judged.extend(observations) or
                        vote(model, observations, *rest))  # fmt: skip
    found = detections(symmetric_model, truth, noise=1.0)
    result = track(symmetric_model, frames, len(truth), start, config, detect=found.__getitem__)
    assert torch.rad2deg((result.joints[:, 0] - truth[:, 0]).abs()).max() < 5.0  # the twin: 180 deg off
    assert judged == []
    track(symmetric_model, frames, len(truth), start, config)  # no detector: the image votes
    assert len(judged) == 4
    off = dataclasses.replace(config, twin_vote=0.0)  # no votes at all, the detections' neither
    stuck = track(symmetric_model, frames, len(truth), start, off, detect=found.__getitem__)
    assert torch.rad2deg((stuck.joints[:, 0] - truth[:, 0]).abs()).min() > 90
