"""Kinematic twins: other joint vectors that put every link at the same place.

Where three consecutive joints alternate their axes (a and c parallel when b is zero, b across them: the Panda's
shoulder z-y-z, many wrists), turning a half turn, b the other way and c a half turn back, `(a + pi, -b, c + pi)`,
moves no link origin at all: only the links between a and c turn half a turn about their own axes. A joint whose
later links sit on its axis or in pairs across it (a hand with two fingers turned half a turn, `a + pi`) is the
simplest case. When those links look alike under a half turn, an image barely tells the twins apart and a search
that finds one may never try the other, although the joint error between them is 180 degrees on a and c (and 2|b|
on b) while every keypoint sits where it should. `kinematic_twins` (one pose) and `twin_trajectories` (a track)
list them so a fit can compare them on the images.

Which moves make twins is found numerically on the robot's kinematics (`twin_moves`), never assumed. A move that
keeps the link origins is a candidate only: a link that is not symmetric about its axis looks different, and the
image decides.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
from torch import Tensor

from drrobot.kinematics import RobotKinematics

_PROBES = 8  # random poses a move must hold at
_TOLERANCE = 1e-4  # metres: link origins a twin may move (float32 forward kinematics)


@dataclasses.dataclass(frozen=True)
class TwinMove:
    """Joint `turns` each turn a half turn, joints `flips` change sign."""

    turns: tuple[int, ...]
    flips: tuple[int, ...] = ()

    def apply(self, joints: Tensor) -> Tensor:
        """joints [..., J] -> the twin [..., J], half turns wrapped into [-pi, pi)."""
        twin = joints.clone()
        for j in self.turns:
            twin[..., j] = torch.remainder(twin[..., j] + 2 * math.pi, 2 * math.pi) - math.pi
        for j in self.flips:
            twin[..., j] = -twin[..., j]
        return twin


def twin_moves(kinematics: RobotKinematics, seed: int = 0) -> list[TwinMove]:
    """The half-turn moves (one joint, or a, -b, c on consecutive joints) that leave every link origin in place at
    random poses within the limits (as a set: two alike fingers may swap places)."""
    spec = kinematics.joint_spec
    J = spec.dof
    generator = torch.Generator().manual_seed(seed)
    probes = spec.denormalize(2 * torch.rand(_PROBES, J, generator=generator) - 1)  # [P, J]
    candidates = [TwinMove((a,)) for a in range(J)]
    candidates += [TwinMove((a, a + 2), (a + 1,)) for a in range(J - 2)]
    return [move for move in candidates
            if float(placement_gap(kinematics, probes, move.apply(probes)).amax()) < _TOLERANCE]


def placement_gap(kinematics: RobotKinematics, a: Tensor, b: Tensor) -> Tensor:
    """How far poses b [..., J] put their link origins from those of poses a [..., J]: the largest distance from one
    of b's origins to the nearest of a's [...] (as a set: two alike fingers may swap places)."""
    return torch.cdist(kinematics.link_poses(b)[..., :3, 3], kinematics.link_poses(a)[..., :3, 3]).amin(-1).amax(-1)


def same_placement(kinematics: RobotKinematics, a: Tensor, b: Tensor, tolerance: float = 0.1) -> bool:
    """Whether joints a and b [J] put the link origins within `tolerance` of their spread (the largest distance of
    a's origins from their mean) of each other: the same pose, or kinematic twins."""
    origins = kinematics.link_poses(a)[:, :3, 3]  # [L, 3]
    spread = float((origins - origins.mean(dim=0)).norm(dim=-1).max())
    return float(placement_gap(kinematics, a, b)) <= tolerance * spread


def kinematic_twins(kinematics: RobotKinematics, joints: Tensor, moves: list[TwinMove]) -> Tensor:
    """Every distinct twin of joints [J] that the limits allow (each non-empty combination of the moves) -> [M, J];
    a joint a half turn takes outside its limits is tried a whole turn back."""
    lower, upper = kinematics.joint_spec.limits_like(joints)
    found = []
    for twin in _twins(joints, moves, lower, upper):
        inside = bool(((twin >= lower) & (twin <= upper)).all())
        if inside and all((twin - f).abs().amax() > 1e-4 for f in [joints, *found]):
            found.append(twin)
    return torch.stack(found) if found else joints.new_zeros(0, len(joints))


def twin_trajectories(kinematics: RobotKinematics, joints: Tensor, moves: list[TwinMove]) -> list[Tensor]:
    """The twin [T, J] of a trajectory joints [T, J] under each non-empty combination of `moves`; a joint a half
    turn takes outside its limits goes a whole turn back where that fits, else it is clamped (that twin cannot
    follow the trajectory there)."""
    lower, upper = kinematics.joint_spec.limits_like(joints)
    return [torch.minimum(torch.maximum(twin, lower), upper) for twin in _twins(joints, moves, lower, upper)]


def _twins(joints: Tensor, moves: list[TwinMove], lower: Tensor, upper: Tensor):
    """joints [..., J] under each non-empty combination of the moves, each joint outside its limits moved a whole
    turn back where that brings it inside (it may still be outside)."""
    for count in range(1, len(moves) + 1):
        for combination in itertools.combinations(moves, count):
            twin = joints
            for move in combination:
                twin = move.apply(twin)
            twin = torch.where(twin < lower, twin + 2 * math.pi, twin)
            yield torch.where(twin > upper, twin - 2 * math.pi, twin)
