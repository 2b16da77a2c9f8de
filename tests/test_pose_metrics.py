"""Pose metrics against hand-computed values and DREAM's discretised AUC definition."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from drrobot.data.dream import load_dream, write_camera_settings, write_frame
from drrobot.fit.dream_eval import dream_truth, logged_pose_vectors
from drrobot.fit.metrics import (
    add_auc,
    add_distances,
    inside_image,
    joint_errors_deg,
    pck_auc,
    pose_metrics,
)
from drrobot.kinematics import RobotKinematics
from drrobot.robots import load_robot


def _dream_style_auc(values: np.ndarray, threshold: float, step: float, strict: bool) -> float:
    """The definition DREAM evaluates: trapezoid over a grid 0, step, ... < threshold, divided by threshold."""
    grid = np.arange(0.0, threshold, step)  # [G]
    hits = values[None, :] < grid[:, None] if strict else values[None, :] <= grid[:, None]  # [G, N]
    return float(np.trapezoid(hits.mean(axis=1), dx=step) / threshold)


def test_joint_errors_deg():
    pred, gt = np.array([[1.0, 0.0], [1.0, 0.0]]), np.zeros((2, 2))
    err = joint_errors_deg(pred, gt)
    assert err["per_joint"] == pytest.approx([180 / math.pi, 0.0])
    assert err["mean"] == pytest.approx(90 / math.pi) and err["mean_first6"] is None
    seven = joint_errors_deg(torch.full((3, 7), 0.1), torch.zeros(3, 7).index_fill_(1, torch.tensor([6]), 0.3))
    assert seven["mean_first6"] == pytest.approx(math.degrees(0.1))
    assert seven["mean"] == pytest.approx(math.degrees(0.1 * 6 / 7 + 0.2 / 7))


def test_add_distances_of_a_known_offset():
    gt = np.random.default_rng(0).normal(size=(4, 7, 3))
    offset = np.array([0.03, 0.0, 0.04])  # 5 cm
    assert add_distances(gt + offset, gt) == pytest.approx(np.full(4, 0.05))


def test_add_auc():
    assert add_auc(np.zeros(5)) == 1.0
    assert add_auc(np.array([0.1, 0.2, np.inf])) == 0.0
    # 1 - 0.02/0.1 = 0.8 and 1 - 0.05/0.1 = 0.5, a failed frame scores 0, the 0.3 m frame too
    add = np.array([0.02, 0.05, np.nan, 0.3])
    assert add_auc(add) == pytest.approx((0.8 + 0.5) / 4)
    assert add_auc(add) == pytest.approx(_dream_style_auc(add, 0.1, 1e-5, strict=False), abs=1e-4)
    assert add_auc(torch.tensor([0.01]), threshold=0.02) == pytest.approx(0.5)


def test_pck_auc():
    gt = np.zeros((2, 2, 2))
    pred = gt + np.array([[[5.0, 0.0], [0.0, 10.0]], [[0.0, 0.0], [30.0, 40.0]]])  # errors 5, 10, 0, 50 px
    assert pck_auc(pred, gt) == pytest.approx((0.75 + 0.5 + 1.0 + 0.0) / 4)
    dist = np.array([5.0, 10.0, 0.0, 50.0])
    assert pck_auc(pred, gt) == pytest.approx(_dream_style_auc(dist, 20.0, 0.01, strict=True), abs=1e-3)
    valid = np.array([[True, False], [True, False]])
    assert pck_auc(pred, gt, valid=valid) == pytest.approx((0.75 + 1.0) / 2)
    assert pck_auc(gt, gt) == 1.0 and pck_auc(gt + 20.0, gt) == 0.0
    pred[0, 0] = np.nan  # not detected: a miss
    assert pck_auc(pred, gt) == pytest.approx((0.5 + 1.0) / 4)
    assert math.isnan(pck_auc(pred, gt, valid=np.zeros((2, 2), bool)))


def test_inside_image():
    uv = np.array([[0.0, 0.0], [8.0, 6.0], [-0.1, 3.0], [4.0, 6.1]])
    assert inside_image(uv, 8, 6).tolist() == [True, True, False, False]


def test_pose_metrics_and_report():
    names = [f"joint{i}" for i in range(1, 8)]
    gt = np.zeros((2, 7))
    pred = gt + np.radians(2.0)
    kp = np.zeros((2, 7, 3))
    kp2d = np.zeros((2, 7, 2))
    m = pose_metrics(names, pred, gt, kp + [0.0, 0.0, 0.01], kp, kp2d + [0.0, 4.0], kp2d, fps=12)
    assert m.joint_error_deg == pytest.approx(2.0) and m.joint_error_deg_first6 == pytest.approx(2.0)
    assert m.per_joint_deg == pytest.approx(dict.fromkeys(names, 2.0))
    assert m.add_mm == pytest.approx(10.0) and m.add_auc == pytest.approx(0.9) and m.pck_auc == pytest.approx(0.8)
    assert m.frames == 2 and m.fps == 12.0
    assert m.to_dict()["per_joint_deg"]["joint7"] == pytest.approx(2.0)
    table = m.to_markdown("Panda RealSense")
    assert table.startswith("### Panda RealSense") and "| ADD (mm, mean) | 10.00 |" in table
    assert "| joint3 | 2.000 |" in table
    bare = pose_metrics(names, pred, gt)
    assert bare.add_mm is None and bare.pck_auc is None and "| ADD AUC (0-100 mm) | n/a |" in bare.to_markdown("x")
    assert bare.per_slide_joint_mm == {} and "sliding joint" not in bare.to_markdown("x")


def test_sliding_joints_are_reported_in_mm_apart_from_the_angles():
    names = [f"joint{i}" for i in range(1, 8)]
    gt = np.zeros((2, 7))
    fingers = np.array([[0.010], [0.030]])  # metres
    m = pose_metrics(names, gt, gt, slide_joints=(["finger_joint2"], fingers + [[0.004], [-0.002]], fingers))
    assert m.per_slide_joint_mm == pytest.approx({"finger_joint2": 3.0}) and m.joint_error_deg == 0.0
    assert "| finger_joint2 | 3.00 |" in m.to_markdown("x")
    with pytest.raises(ValueError, match="slide joints"):
        pose_metrics(names, gt, gt, slide_joints=(["a", "b"], fingers, fingers))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: joint_errors_deg(np.zeros(3), np.zeros(3)), r"\[T, J\]"),
        (lambda: joint_errors_deg(np.zeros((2, 3)), np.zeros((2, 4))), "differ in shape"),
        (lambda: add_distances(np.zeros((2, 7, 2)), np.zeros((2, 7, 2))), r"\[T, K, 3\]"),
        (lambda: add_auc(np.zeros((2, 2))), r"\[T\]"),
        (lambda: add_auc(np.zeros(2), threshold=0.0), "threshold"),
        (lambda: pck_auc(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), valid=np.ones(2, bool)), "valid"),
        (lambda: pose_metrics(["a"], np.zeros((2, 2)), np.zeros((2, 2))), "joint names"),
        (lambda: pose_metrics(["a"], np.zeros((2, 1)), np.zeros((2, 1)), pred_kp3d=np.zeros((2, 3, 3))), "both"),
        (
            lambda: pose_metrics(["a"], np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((3, 1, 3)), np.zeros((3, 1, 3))),
            "frames",
        ),
    ],
)
def test_bad_shapes_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_logged_joint_tied_to_a_pose_entry_gives_that_entry():
    """DREAM logs the Panda's `panda_finger_joint1`; the pose vector carries `finger_joint2`, which the model ties
    it to (finger_joint1 = finger_joint2): the entry is read through the tie. Its own name wins when both are logged."""
    spec = RobotKinematics.from_robot("panda").joint_spec
    assert spec.names[-1] == "finger_joint2"
    arm = [f"panda/panda_joint{i}" for i in range(1, 8)]
    positions = np.array([[0.1 * i for i in range(1, 8)] + [0.02], [0.0] * 7 + [0.035]])  # [T = 2, N = 8]
    joints = logged_pose_vectors(spec, arm + ["panda/panda_finger_joint1"], positions)
    np.testing.assert_allclose(joints, positions)
    both = np.concatenate([positions, [[0.01], [0.01]]], axis=1)  # finger_joint2 logged too
    joints = logged_pose_vectors(spec, arm + ["panda/panda_finger_joint1", "panda/panda_finger_joint2"], both)
    np.testing.assert_allclose(joints[:, -1], [0.01, 0.01])
    assert np.isnan(logged_pose_vectors(spec, arm, positions[:, :7])[:, -1]).all()  # nothing logged: NaN


def test_dream_truth_scores_the_arm_in_degrees_and_the_fingers_apart(tmp_path):
    kin = RobotKinematics.from_robot("panda")
    model = SimpleNamespace(joint_spec=kin.joint_spec, robot=load_robot("panda"), link_names=kin.link_names)
    K = np.array([[10.0, 0.0, 4.0], [0.0, 10.0, 3.0], [0.0, 0.0, 1.0]])
    write_camera_settings(tmp_path, K, 8, 6)
    names = ("panda_link0", "panda_link2", "panda_link3", "panda_link4", "panda_link6", "panda_link7", "panda_hand")
    joints = [f"panda/panda_joint{i}" for i in range(1, 8)] + ["panda/panda_finger_joint1"]
    write_frame(tmp_path, 0, np.zeros((6, 8, 3), np.uint8), names, np.ones((7, 3)), np.ones((7, 2)), joints,
                np.array([0.1] * 7 + [0.03]))  # fmt: skip
    truth = dream_truth(load_dream(tmp_path), model)
    assert [n for n, s in zip(kin.joint_spec.names, truth.scored) if s] == [f"joint{i}" for i in range(1, 8)]
    assert [n for n, s in zip(kin.joint_spec.names, truth.sliding) if s] == ["finger_joint2"]
    assert truth.joints[0, -1] == pytest.approx(0.03)
