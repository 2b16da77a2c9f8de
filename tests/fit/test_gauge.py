"""The root joint's gauge: a camera turned about the first joint's axis, with that joint turned back by as much,
sees every moving link where it was; a track that settled along that line is turned back to where the base shows."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from fit_helpers import DARK_BACKGROUND, render_frames, surface_model
from test_fit import observation
from test_twins import ZYZ_ARM, zyz_camera

from drrobot.fit import FitConfig, TrackConfig
from drrobot.fit.cameras import look_at
from drrobot.fit.gauge import gauge_links, root_motions, turned_camera
from drrobot.fit.keypoint_points import keypoint_links, robot_keypoints
from drrobot.fit.objectives import Keypoints, link_points
from drrobot.fit.optimize import FitResult
from drrobot.fit import solve
from drrobot.fit.solve import Track, track
from drrobot.kinematics import RobotKinematics
from drrobot.model import project_points

# The z-y-z arm on a base with an orange tab on one side: only the tab shows the camera's turn about joint a.
TAB = '<geom type="box" size="0.07 0.03 0.03" pos="0.14 0 0.03" rgba="0.95 0.55 0.1 1"/>'
TABBED_ARM = ZYZ_ARM.replace('<body name="link1"', TAB + '\n      <body name="link1"', 1)


def camera_frame(viewmat, poses):
    """Link poses [L, 4, 4] in the camera frame of viewmat [4, 4]."""
    return viewmat @ poses


def test_the_camera_turned_about_joint_1_sees_every_link_but_the_base_in_place():
    kinematics = RobotKinematics.from_robot("panda")
    angles = torch.tensor([-0.4, 0.3])
    motions = root_motions(kinematics, angles)  # [2, 4, 4]
    joints = torch.tensor([0.3, -0.5, 0.2, -2.0, 0.4, 1.6, 0.7, 0.03])
    viewmat = look_at(torch.tensor([1.4, -0.6, 0.9]), torch.tensor([0.0, 0.0, 0.4]))
    seen = camera_frame(viewmat, kinematics.link_poses(joints[None])[0])  # [L, 4, 4]
    for angle, motion in zip(angles, motions):
        turned = joints.clone()
        turned[0] += angle
        now = camera_frame(turned_camera(viewmat, motion), kinematics.link_poses(turned[None])[0])
        moved = (now - seen).abs().amax(dim=(1, 2)) > 1e-4  # [L]
        assert kinematics.link_names[int(moved.nonzero()[0, 0])] == "link0"  # the base: seen turned
        assert int(moved.sum()) == 1
    assert root_motions(RobotKinematics.from_robot("toy_floating"), angles) is None  # the base pose is free


def test_the_links_that_show_the_gauge_are_the_ones_joint_1_leaves_in_place():
    panda = RobotKinematics.from_robot("panda")
    assert [panda.link_names[i] for i in gauge_links(panda).nonzero()[:, 0].tolist()] == ["link0"]
    assert gauge_links(RobotKinematics.from_robot("toy_floating")) is None


def joint_a_error_after_tracking_from_a_turned_camera(tmp_path, config: TrackConfig, turn: float = 0.45,
                                                      arm: str = TABBED_ARM):  # fmt: skip
    """Degrees [T] by which joint a is off when a video of the arm is tracked from its true frame-0 pose seen by
    the true camera turned `turn` radians about joint a's axis, joint a turned back by as much."""
    path = tmp_path / "arm.xml"
    path.write_text(arm)
    model = surface_model(str(path), points=1500)
    truth = torch.tensor([0.6, 0.5, -0.8, 0.7]).repeat(5, 1)
    truth[:, 2] = torch.linspace(-0.8, -0.4, 5)
    camera = zyz_camera()
    frames = [observation(f) for f in render_frames(model, truth, camera, DARK_BACKGROUND)]
    motion = root_motions(model.kinematics, torch.tensor([turn]))[0]
    joints = truth[:1].clone()
    joints[0, 0] += turn
    start = FitResult(joints, turned_camera(camera.viewmats, motion)[None, None], camera.Ks[None, None], None,
                      torch.zeros(1), {}, [], 0)  # fmt: skip
    result = track(model, frames, len(truth), start, config)
    return torch.rad2deg((result.joints[:, 0] - truth[:, 0]).abs())


CONFIG = TrackConfig(fit=FitConfig(steps=(8,), scales=(1.0,), optimizer="lbfgs"), keyframes=4, twins=False,
                     camera_fit=FitConfig(steps=(1,), scales=(1.0,), optimizer="lbfgs"))  # fmt: skip


def test_a_track_along_the_gauge_is_turned_back_where_the_base_shows(tmp_path):
    config = CONFIG
    assert joint_a_error_after_tracking_from_a_turned_camera(tmp_path, config).max() < 6.0  # 26 deg at the start
    stuck = joint_a_error_after_tracking_from_a_turned_camera(tmp_path, dataclasses.replace(config, gauge=0.0))
    assert stuck.min() > 15.0


def test_a_base_that_looks_alike_from_every_side_leaves_the_track_unturned(tmp_path):
    """The plain cylinder base cannot tell the turns apart: the track stays where it started (the truth)."""
    assert joint_a_error_after_tracking_from_a_turned_camera(tmp_path, CONFIG, turn=0.0, arm=ZYZ_ARM).max() < 2.0


def test_a_turn_is_taken_only_where_the_image_has_a_minimum_inside_the_turns_tried(tmp_path, monkeypatch):
    """Errors falling on to the last turn tried locate nothing (a bias, e.g. of the background): no
    turn. A minimum inside the turns is taken, between the turns tried."""
    path = tmp_path / "arm.xml"
    path.write_text(TABBED_ARM)
    model = surface_model(str(path), points=300)
    camera = zyz_camera()
    tracked = Track(torch.tensor([[0.6, 0.5, -0.8, 0.7]]).repeat(4, 1), camera.viewmats.expand(4, 1, 4, 4),
                    camera.Ks.expand(4, 1, 3, 3), torch.zeros(4))  # fmt: skip
    config = TrackConfig(gauge=40.0, gauge_step=10.0)  # turns -40, -30, ..., 40 deg
    turns = torch.arange(-40.0, 41.0, 10.0)  # [9]
    for curve, expected in (((turns - 40).abs(), None), ((turns + 22).square(), -22.0)):  # falling to +40 / a V
        monkeypatch.setattr(solve, "_gauge_errors", lambda *args, curve=curve: 1.0 + 0.01 * curve)
        turned = solve._turned_gauge(model, lambda t: None, tracked, config, None, None)
        if expected is None:
            assert turned is None
        else:
            assert math.degrees(float(turned.joints[0, 0] - tracked.joints[0, 0])) == pytest.approx(expected, abs=0.1)


def test_the_detections_on_the_base_turn_a_track_back_without_rendering(tmp_path, monkeypatch):
    """A track 14 deg along the gauge, judged by exact detections of the base's points: turned back to the truth,
    nothing rendered. Detections off the base, or too few on it, take no turn."""
    path = tmp_path / "arm.xml"
    path.write_text(TABBED_ARM)
    model = surface_model(str(path), points=1500)
    spec = robot_keypoints(model, min_gaussians=20)
    ids, local = keypoint_links(model, spec)
    camera, truth = zyz_camera(), torch.tensor([[0.6, 0.5, -0.8, 0.7]]).repeat(4, 1)
    world = link_points(model.kinematics.link_poses(truth[:1]), ids, local)  # [1, K, 3]
    uv, _, _ = project_points(world, camera.viewmats.reshape(1, 1, 4, 4), camera.Ks.reshape(1, 1, 3, 3))
    detections = Keypoints(ids, local, uv, torch.ones(1, 1, len(ids), dtype=torch.bool))
    off = 0.25  # radians along the gauge
    motion = root_motions(model.kinematics, torch.tensor([off]))[0]
    joints = truth.clone()
    joints[:, 0] += off
    tracked = Track(joints, turned_camera(camera.viewmats, motion).expand(4, 1, 4, 4), camera.Ks.expand(4, 1, 3, 3),
                    torch.zeros(4))  # fmt: skip
    config = TrackConfig(gauge=40.0, gauge_step=10.0, keyframes=4)
    frame = SimpleNamespace(width=camera.width)  # all the judgement reads of a frame

    def rendered(*args, **kwargs):
        raise AssertionError("rendered")

    monkeypatch.setattr(solve, "_gauge_errors", rendered)
    monkeypatch.setattr(type(model), "render", rendered)
    turned = solve._keypoint_turned_gauge(model, lambda t: frame, tracked, config, lambda t: detections)
    assert math.degrees(float((turned.joints[:, 0] - truth[:, 0]).abs().max())) < 2.0
    assert (turned.joints[:, 1:] == truth[:, 1:]).all()
    assert torch.allclose(turned.viewmats, camera.viewmats.expand(4, 1, 4, 4), atol=0.03)  # the camera with it
    base = torch.tensor([name == "base" for name in spec.link_names])
    for visible in (~base, base & (torch.cumsum(base.long(), 0) == 1)):  # the arm's points only; one on the base
        seen = dataclasses.replace(detections, visible=visible.reshape(1, 1, -1))
        assert solve._keypoint_turned_gauge(model, lambda t: frame, tracked, config, lambda t: seen) is None


def test_after_the_polish_the_detections_on_the_base_judge_the_gauge_once_more(tmp_path, monkeypatch):
    """The polish refines the camera again and can leave the gauge; with a detector, its points on the base judge
    the polished track's turns, and a turn they take is what `track` returns."""
    path = tmp_path / "arm.xml"
    path.write_text(TABBED_ARM)
    model = surface_model(str(path), points=300)
    truth = torch.tensor([0.6, 0.5, -0.8, 0.7]).repeat(4, 1)
    camera = zyz_camera()
    frames = [observation(f) for f in render_frames(model, truth, camera, DARK_BACKGROUND)]
    start = FitResult(truth[:1], camera.viewmats[None, None], camera.Ks[None, None], None, torch.zeros(1), {}, [], 0)
    asked = []  # `image` of each gauge judgement, in order

    monkeypatch.setattr(solve, "_turned_gauge", lambda *args: asked.append("image"))
    monkeypatch.setattr(solve, "_keypoint_turned_gauge", lambda model, get, tracked, config, detect: asked.append(
        "keypoints") or dataclasses.replace(tracked, joints=tracked.joints + 0.1))  # fmt: skip
    fast = FitConfig(steps=(2,), scales=(1.0,), optimizer="lbfgs")
    config = dataclasses.replace(CONFIG, fit=fast, camera_fit=fast, reseeds=0, polish=True)
    result = track(model, frames, len(truth), start, config, detect=lambda t: None)
    assert asked == ["image", "keypoints"]  # before the second pass, after the polish
    unturned = track(model, frames, len(truth), start, config)  # no detector: no judgement after the polish
    assert asked == ["image", "keypoints", "image"]
    assert torch.allclose(result.joints, unturned.joints + 0.1)
