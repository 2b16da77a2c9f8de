"""A beam search along the kinematic chain: the robot is placed joint by joint, seeing only the links placed so far.

One gradient descent from a prior pose finds a 7-joint arm only when it starts within ~15 degrees of the answer.
Searching all joints at once is hopeless, but the links nearest the base depend on few joints: joint 1 alone
places link 1, joints 1-2 place link 2, and so on. So for each joint in chain order, every hypothesis of the beam
is expanded over a grid of that joint's values, all expansions are scored with only the links the joints so far
determine, plus those the next joint moves (at its current value: a link that spins about its own axis, like a
shoulder housing, shows its joint only through the links after it; the others are not rendered), the best
`beam` are refined by a few Adam steps (the camera too when it
is unknown) and carried to the next joint. The image's unexplained parts (links not yet placed) cost the same
for every hypothesis, so they do not bias the choice.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from drrobot.fit.objectives import Objective, Observation
from drrobot.fit.optimize import FitConfig, fit
from drrobot.fit.params import PoseParameters
from drrobot.model import RobotModel

_PROBE = 0.3  # fraction of a joint's range it is moved by to see which links it moves


@dataclasses.dataclass
class ChainConfig:
    """Settings of `chain_search`."""

    values: int = 8
    """Values tried for each joint, evenly over its limits (continuous joints: around the circle)."""
    beam: int = 6
    """Hypotheses kept after each joint."""
    steps: int = 8
    """Adam steps refining the kept hypotheses after each joint."""
    scale: float = 0.5
    """Image scale of the search, relative to the observation."""


def joint_stages(model: RobotModel, joints: Tensor) -> tuple[Tensor, Tensor]:
    """Which links each pose-vector joint moves, found by moving it at `joints` [J]: `moves` [J, L] bool, and
    `visible` [J, L] bool: the links all of whose moving joints come at or before each joint (chain order =
    pose-vector order). Links no joint moves (a fixed base) are visible from the first stage on."""
    spec = model.joint_spec
    J = spec.dof
    span = torch.as_tensor(spec.upper - spec.lower, dtype=torch.float32, device=joints.device)  # [J]
    probes = joints.expand(J, J).clone() + torch.diag(_PROBE * span)  # [J, J]
    with torch.no_grad():
        rest = model.kinematics.link_poses(joints[None])[0]  # [L, 4, 4]
        moved = model.kinematics.link_poses(probes)  # [J, L, 4, 4]
    moves = (moved - rest).abs().flatten(-2).amax(-1) > 1e-5  # [J, L]
    placed = torch.cumsum(moves.int(), dim=0)  # [J, L] joints moving each link so far
    visible = placed == moves.sum(0, keepdim=True)  # all of its joints placed
    return moves, visible


def joint_grid(model: RobotModel, j: int, count: int) -> Tensor:
    """`count` values [count] of joint j: evenly inside its limits (ends excluded), or around the circle."""
    spec = model.joint_spec
    if spec.continuous[j]:
        return torch.arange(count, dtype=torch.float32) * (2 * torch.pi / count) - torch.pi
    fractions = (torch.arange(count, dtype=torch.float32) + 0.5) / count
    return float(spec.lower[j]) + fractions * float(spec.upper[j] - spec.lower[j])


def chain_search(
    model: RobotModel,
    observation: Observation,  # Bo = 1, C = 1
    joints: Tensor,  # [V, J] starting joints (e.g. the prior pose for every camera hypothesis)
    viewmats: Tensor,  # [V, 1, 4, 4] camera hypotheses
    K: Tensor,  # [3, 3] at the observation's resolution
    objective: Objective,
    skin: Tensor,  # [N, L] skinning weights
    config: ChainConfig | None = None,
    optimize_camera: bool = True,
    pivot: Tensor | None = None,  # [3] world point camera corrections rotate about
) -> tuple[Tensor, Tensor, Tensor]:
    """Beam search (module docstring). Returns the final beam's joints [W, J], viewmats [W, 1, 4, 4] and losses
    [W], best first."""
    config = config or ChainConfig()
    size = (observation.width, observation.height)
    link_of = skin.argmax(dim=-1)  # [N] each Gaussian's dominant link
    moves, visible = joint_stages(model, joints[0])
    losses = torch.zeros(len(joints))
    stages = [j for j in range(model.joint_spec.dof) if moves[j].any()]
    for k, j in enumerate(stages):
        mask = visible[stages[min(k + 1, len(stages) - 1)]][link_of]  # [N] placed links and the next joint's
        grid = joint_grid(model, j, config.values).to(joints)  # [G]
        G = len(grid)
        candidates = joints.repeat_interleave(G, dim=0)  # [V G, J]
        candidates[:, j] = grid.repeat(len(joints))
        cameras = viewmats.repeat_interleave(G, dim=0)
        scores = _evaluate(model, observation, candidates, cameras, K, size, objective, skin, config.scale, mask)
        keep = scores.argsort()[: config.beam]
        B = len(keep)
        params = PoseParameters(model.joint_spec, candidates[keep], cameras[keep], K.expand(B, 1, 3, 3), size,
                                pivots=None if pivot is None else pivot.expand(B, 3), optimize_camera=optimize_camera)  # fmt: skip
        result = fit(model, params, observation, objective, FitConfig(steps=(config.steps,), scales=(config.scale,)),
                     skin, gaussian_mask=mask)  # fmt: skip
        joints, viewmats, losses = result.joints, result.viewmats, result.losses
    order = losses.argsort()
    return joints[order], viewmats[order], losses[order]


def _evaluate(model, observation, joints, viewmats, K, size, objective, skin, scale, mask) -> Tensor:
    """The objective [B] of each hypothesis as it is (no steps), at `scale`, rendering the `mask` Gaussians."""
    B = len(joints)
    params = PoseParameters(model.joint_spec, joints, viewmats, K.expand(B, 1, 3, 3), size, optimize_camera=False,
                            color_correction=False)  # fmt: skip
    return fit(model, params, observation, objective, FitConfig(steps=(0,), scales=(scale,)), skin,
               gaussian_mask=mask).losses  # fmt: skip
