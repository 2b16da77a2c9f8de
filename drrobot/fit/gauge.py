"""The root joint's gauge: a camera turned about the first joint's axis, and that joint turned back by as much.

A fixed-base arm's first joint turns every link but the base about one axis fixed in the world (the Panda's joint
1, vertical). Turning a static camera about that axis by d and the joint by d puts every moving link where it was
in the image: only the base shows the difference, a few pixels of a 320-pixel frame. A track can settle anywhere
along that line, and where the robot-free background is computed from the track, the base the track got wrong
stays in the background and defends it (look-alike kinect360: joint 1 20 deg off with the camera turned as much,
ADD 13 mm; at keyframes the whole objective lowest where the track is, the appearance terms 25 deg towards the
truth). `root_motions` finds the axis numerically on the kinematics; `turned_camera` applies a turn;
`keypoint_gauge_costs` judges turns by a detector's points on the base, with no rendering.
"""

from __future__ import annotations

import torch
from torch import Tensor

from drrobot.fit.objectives import Keypoints, link_points
from drrobot.kinematics import RobotKinematics
from drrobot.model import project_points

_RIGID = 1e-4  # metres: the moved links must move as one body by this much


def root_motions(kinematics: RobotKinematics, angles: Tensor) -> Tensor | None:
    """World motions [D, 4, 4] by which turning joint 0 by each of angles [D] (radians) moves every link it moves;
    None when the robot has a floating base, joint 0 is not a revolute joint or does not move the links it moves as
    one body (then it has no such gauge)."""
    found = _root_turns(kinematics, angles)
    return None if found is None else found[0]


def gauge_links(kinematics: RobotKinematics) -> Tensor | None:
    """[L] bool: the links that alone show the root gauge (those joint 0 leaves in place: the Panda's base), or None
    when the robot has no such gauge (`root_motions`)."""
    found = _root_turns(kinematics, torch.zeros(0))
    return None if found is None else ~found[1]


def _root_turns(kinematics: RobotKinematics, angles: Tensor) -> tuple[Tensor, Tensor] | None:
    """`root_motions` [D, 4, 4] and the links [L] bool joint 0 moves; None where the robot has no such gauge."""
    spec = kinematics.joint_spec
    if spec.floating_base or spec.dof == 0:
        return None
    angles = torch.cat([angles.reshape(-1).float(), torch.ones(1)])  # [D + 1]: the last a probe that moves links
    joints = kinematics.canonical_joints()[None].expand(len(angles), -1).clone()  # [D + 1, J]
    turned = joints.clone()
    turned[:, 0] += angles.to(joints)
    before = kinematics.link_poses(joints[:1])[0]  # [L, 4, 4]
    after = kinematics.link_poses(turned)  # [D + 1, L, 4, 4]
    moved = (after[-1] - before).abs().amax(dim=(1, 2)) > _RIGID  # [L]
    if not bool(moved.any()):
        return None
    motions = after[:, moved] @ torch.linalg.inv(before[moved])  # [D + 1, M, 4, 4] each moved link's world motion
    if float((motions - motions[:, :1]).abs().amax()) > _RIGID:
        return None
    trace = motions[:, 0, 0, 0] + motions[:, 0, 1, 1] + motions[:, 0, 2, 2]  # [D + 1]
    turn = torch.arccos(((trace - 1) / 2).clamp(-1, 1))  # [D + 1] the motion's rotation angle
    if float((turn - angles.abs().to(turn)).abs().amax()) > 1e-3:  # a slide joint, or one geared against its angle
        return None
    return motions[:-1, 0], moved


def turned_camera(viewmats: Tensor, motion: Tensor) -> Tensor:
    """viewmats [..., 4, 4] that see links moved by motion [4, 4] where viewmats saw them unmoved."""
    return viewmats @ torch.linalg.inv(motion)


def keypoint_gauge_costs(
    kinematics: RobotKinematics,
    joints: Tensor,  # [F, J] a track's joints at F frames
    viewmats: Tensor,  # [F, C, 4, 4] its cameras there
    Ks: Tensor,  # [F, C, 3, 3]
    detections: list[Keypoints | None],  # [F] each frame's detections (uv [1, C, K, 2]), None: not detected
    motions: Tensor,  # [D, 4, 4] the turns (`root_motions`)
    scale: float,  # Cauchy scale of a detection's distance, pixels
    min_points: int = 2,
) -> tuple[Tensor, Tensor]:
    """The robust reprojection cost [F, D] of the confident detections on the links only the gauge shows (the
    base), with each camera turned by each motion (joint 0 turned back leaves the other points in place), and
    which frames [F] bool have `min_points` of them to compare (elsewhere the costs are 0)."""
    shown = gauge_links(kinematics)
    F, D = len(detections), len(motions)
    costs, compared = torch.zeros(F, D), torch.zeros(F, dtype=torch.bool)
    for f, found in enumerate(detections):
        if found is None or shown is None:
            continue
        on_base = shown.to(found.link_ids.device)[found.link_ids]  # [K]
        seen = found.visible[0] & on_base  # [C, K]
        if int(seen.sum()) < min_points:
            continue
        points = link_points(kinematics.link_poses(joints[f][None]), found.link_ids, found.local_points)  # [1, K, 3]
        turned = turned_camera(viewmats[f][None], motions[:, None].to(viewmats))  # [D, C, 4, 4]
        C = turned.shape[1]
        uv, _, _ = project_points(points.expand(D, -1, -1), turned, Ks[f].expand(D, C, 3, 3))  # [D, C, K, 2]
        distance = torch.log1p(((uv - found.uv[0]).norm(dim=-1) / scale).square())  # [D, C, K]
        costs[f] = (distance * seen).sum(dim=(1, 2)).cpu()
        compared[f] = True
    return costs, compared
