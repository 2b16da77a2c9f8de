"""The root joint's gauge: a camera turned about the first joint's axis, and that joint turned back by as much.

A fixed-base arm's first joint turns every link but the base about one axis fixed in the world (the Panda's joint
1, vertical). Turning a static camera about that axis by d and the joint by d puts every moving link where it was
in the image: only the base shows the difference, a few pixels of a 320-pixel frame. A track can settle anywhere
along that line, and where the robot-free background is computed from the track, the base the track got wrong
stays in the background and defends it (look-alike kinect360: joint 1 20 deg off with the camera turned as much,
ADD 13 mm; at keyframes the whole objective lowest where the track is, the appearance terms 25 deg towards the
truth). `root_motions` finds the axis numerically on the kinematics; `turned_camera` applies a turn.
"""

from __future__ import annotations

import torch
from torch import Tensor

from drrobot.kinematics import RobotKinematics

_RIGID = 1e-4  # metres: the moved links must move as one body by this much


def root_motions(kinematics: RobotKinematics, angles: Tensor) -> Tensor | None:
    """World motions [D, 4, 4] by which turning joint 0 by each of angles [D] (radians) moves every link it moves;
    None when the robot has a floating base, joint 0 is not a revolute joint or does not move the links it moves as
    one body (then it has no such gauge)."""
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
    motions = after[:, moved] @ torch.linalg.inv(before[moved])  # [D, M, 4, 4] each moved link's world motion
    if float((motions - motions[:, :1]).abs().amax()) > _RIGID:
        return None
    trace = motions[:, 0, 0, 0] + motions[:, 0, 1, 1] + motions[:, 0, 2, 2]  # [D]
    turn = torch.arccos(((trace - 1) / 2).clamp(-1, 1))  # [D] the motion's rotation angle
    if float((turn - angles.abs().to(turn)).abs().amax()) > 1e-3:  # a slide joint, or one geared against its angle
        return None
    return motions[:-1, 0]


def turned_camera(viewmats: Tensor, motion: Tensor) -> Tensor:
    """viewmats [..., 4, 4] that see links moved by motion [4, 4] where viewmats saw them unmoved."""
    return viewmats @ torch.linalg.inv(motion)
