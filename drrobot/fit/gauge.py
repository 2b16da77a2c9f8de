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
    turned = _turned_root(kinematics, angles)
    if turned is None:
        return None
    before, after, moved = turned  # after [D + 1, L, 4, 4]: the last turned by a probe's radian
    motions = after[:, moved] @ torch.linalg.inv(before[moved])  # [D + 1, M, 4, 4] each moved link's world motion
    if float((motions - motions[:, :1]).abs().amax()) > _RIGID:
        return None
    trace = motions[:, 0, 0, 0] + motions[:, 0, 1, 1] + motions[:, 0, 2, 2]  # [D + 1]
    turn = torch.arccos(((trace - 1) / 2).clamp(-1, 1))  # [D + 1] the motion's rotation angle
    probed = torch.cat([angles.reshape(-1).float(), torch.ones(1)]).abs().to(turn)  # [D + 1]
    if float((turn - probed).abs().amax()) > 1e-3:  # a slide joint, or one geared against its angle
        return None
    return motions[:-1, 0]


def gauge_links(kinematics: RobotKinematics) -> Tensor | None:
    """[L] bool: the links that alone show the root gauge (those joint 0 leaves in place: the Panda's base), or None
    when the robot has no such gauge (`root_motions`)."""
    if root_motions(kinematics, torch.zeros(0)) is None:
        return None
    return ~_turned_root(kinematics, torch.zeros(0))[2]


def _turned_root(kinematics: RobotKinematics, angles: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """Link poses [L, 4, 4] at the canonical joints, [D + 1, L, 4, 4] with joint 0 turned by each of angles [D] and
    then by a radian, and the links [L] bool that a turn moves; None for a floating base, no joints or a joint 0
    that moves nothing."""
    spec = kinematics.joint_spec
    if spec.floating_base or spec.dof == 0:
        return None
    probed = torch.cat([angles.reshape(-1).float(), torch.ones(1)])  # [D + 1]: the last a probe that moves links
    joints = kinematics.canonical_joints()[None].expand(len(probed), -1).clone()  # [D + 1, J]
    turned = joints.clone()
    turned[:, 0] += probed.to(joints)
    before = kinematics.link_poses(joints[:1])[0]  # [L, 4, 4]
    after = kinematics.link_poses(turned)  # [D + 1, L, 4, 4]
    moved = (after[-1] - before).abs().amax(dim=(1, 2)) > _RIGID  # [L]
    return (before, after, moved) if bool(moved.any()) else None


def turned_camera(viewmats: Tensor, motion: Tensor) -> Tensor:
    """viewmats [..., 4, 4] that see links moved by motion [4, 4] where viewmats saw them unmoved."""
    return viewmats @ torch.linalg.inv(motion)
