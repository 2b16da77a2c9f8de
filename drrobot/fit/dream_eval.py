"""Scoring a reconstruction against DREAM ground truth (Panda-3CAM and its look-alikes), as the field does.

>>> truth = dream_truth(load_dream("azure"), model)
>>> metrics = score_reconstruction(model, rec, truth)        # PoseMetrics: joint error (deg), ADD, AUCs, fps
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import mujoco
import numpy as np
import torch

from drrobot.data.dream import DreamFormatError, DreamSequence, match_names
from drrobot.fit.metrics import PoseMetrics, inside_image, pose_metrics
from drrobot.joints import JointSpec
from drrobot.model import RobotModel


@dataclasses.dataclass
class DreamTruth:
    """Ground truth of a DREAM sequence in the model's terms."""

    joints: np.ndarray  # [T, J] pose-vector order; NaN where the file has no matching joint
    scored: np.ndarray  # [J] bool: matched revolute joints (the ones joint errors are reported over)
    sliding: np.ndarray  # [J] bool: matched sliding joints (a gripper's fingers: errors in mm, apart)
    link_ids: np.ndarray  # [K] model link of each matched keypoint
    keypoint_names: list[str]  # [K]
    keypoints_3d: np.ndarray  # [T, K, 3] metres, camera frame
    keypoints_2d: np.ndarray  # [T, K, 2] pixels
    width: int
    height: int


def dream_truth(sequence: DreamSequence, model: RobotModel) -> DreamTruth:
    """Match the sequence's joint and keypoint names to the model's (suffix rule of `match_names`); errors name
    both lists when nothing matches (e.g. a checkpoint of another robot)."""
    spec = model.joint_spec
    frames = sequence.frames
    joints = logged_pose_vectors(spec, frames[0].joint_names, np.array([f.joint_positions for f in frames]))
    matched = int((~np.isnan(joints).all(axis=0)).sum())
    if matched < spec.dof / 2:
        raise DreamFormatError(
            f"{sequence.root}: only {matched} of the model's {spec.dof} joints ({', '.join(spec.names)}) match the "
            f"sequence's ({', '.join(frames[0].joint_names)}): is the checkpoint for this robot "
            f"({model.robot.name!r})?"
        )
    mj = model.robot.mj_model()
    types = np.array([int(mj.jnt_type[mj.joint(n).id]) for n in spec.names])
    logged = ~np.isnan(joints).any(0)  # [J]
    link_index = match_names(frames[0].keypoint_names, model.link_names, what="keypoint")
    keep = [k for k, i in enumerate(link_index) if i is not None]
    return DreamTruth(
        joints=joints,
        scored=(types == int(mujoco.mjtJoint.mjJNT_HINGE)) & logged,
        sliding=(types == int(mujoco.mjtJoint.mjJNT_SLIDE)) & logged,
        link_ids=np.array([link_index[k] for k in keep], dtype=np.int64),
        keypoint_names=[frames[0].keypoint_names[k] for k in keep],
        keypoints_3d=np.stack([f.keypoints_3d[keep] for f in frames]),
        keypoints_2d=np.stack([f.keypoints_2d[keep] for f in frames]),
        width=sequence.width,
        height=sequence.height,
    )


def logged_pose_vectors(spec: JointSpec, names: Sequence[str], positions: np.ndarray) -> np.ndarray:
    """The pose vectors [T, J] of logged joints (names [N], positions [T, N]; NaN where nothing is logged): each
    entry logged under its own name (`match_names`' suffix rule) or, failing that, through a joint tied to it
    linearly (the Panda's `finger_joint1`, which follows the pose vector's `finger_joint2`)."""
    readings = [c.inverted() for c in spec.couplings]
    readings = [r for r in readings if r is not None]  # pose entries read from the joints tied to them
    targets = list(spec.names) + [spec.joint_names[r.source] for r in readings]
    entry = {int(j): i for i, j in enumerate(spec.independent)}  # joint_names index -> pose entry
    q0 = spec.joint_qpos0
    joints = np.full((len(positions), spec.dof), np.nan)
    index = match_names(names, targets, what="joint")  # logged joint -> target
    for k, j in enumerate(index):  # entries logged under their own names
        if j is not None and j < spec.dof:
            joints[:, j] = positions[:, k]
    for k, j in enumerate(index):  # entries logged only through a joint tied to them
        if j is None or j < spec.dof:
            continue
        r = readings[j - spec.dof]
        target = entry.get(r.dependent)
        if target is not None and np.isnan(joints[:, target]).all():
            joints[:, target] = q0[r.dependent] + r.evaluate(positions[:, k] - q0[r.source])
    return joints


def predicted_keypoints(model: RobotModel, joints, viewmats, Ks, link_ids) -> tuple[np.ndarray, np.ndarray]:
    """Link origins of `link_ids` [K] at joints [T, J] in each frame's camera: 3D [T, K, 3] and pixels [T, K, 2]."""
    with torch.no_grad():
        poses = model.kinematics.link_poses(torch.as_tensor(joints, dtype=torch.float32, device=model.device))
        origins = poses[:, torch.as_tensor(link_ids, device=model.device), :3, 3].double().cpu().numpy()  # [T, K, 3]
    viewmats, Ks = np.asarray(viewmats, dtype=np.float64), np.asarray(Ks, dtype=np.float64)
    cam = np.einsum("tij,tkj->tki", viewmats[:, :3, :3], origins) + viewmats[:, None, :3, 3]
    pix = np.einsum("tij,tkj->tki", Ks, cam)
    return cam, pix[..., :2] / np.maximum(pix[..., 2:], 1e-9)


def score_reconstruction(model: RobotModel, joints, viewmats, Ks, truth: DreamTruth, fps: float | None = None) -> PoseMetrics:
    """Joint errors over the scored joints, ADD / ADD-AUC over the keypoints, 2D PCK-AUC (in-image truth), and
    the sliding joints' errors in mm."""
    joints = np.asarray(joints, dtype=np.float64)
    kp3d, kp2d = predicted_keypoints(model, joints, viewmats, Ks, truth.link_ids)
    names = [n for n, s in zip(model.joint_spec.names, truth.scored) if s]
    slides = [n for n, s in zip(model.joint_spec.names, truth.sliding) if s]
    return pose_metrics(
        names, joints[:, truth.scored], truth.joints[:, truth.scored], kp3d, truth.keypoints_3d, kp2d,
        truth.keypoints_2d, fps=fps, valid_2d=inside_image(truth.keypoints_2d, truth.width, truth.height),
        slide_joints=(slides, joints[:, truth.sliding], truth.joints[:, truth.sliding]),
    )  # fmt: skip
