"""Joints and camera searched together by the cross-entropy method, scored by edge-template matching.

A gradient descent finds a 7-joint arm only from within ~15 degrees of it, and the camera placement
(`drrobot.fit.placement`) ranks cameras well only for the right joints. Here each starting hypothesis (e.g. a
placement: a pose of the template library and the camera that matched it) grows a population: joints
(normalised into [-1, 1]), a rotation of the camera about the robot's centre (a rotation vector in the camera's
frame: tilt, pan, roll) and its log distance, drawn from a diagonal Gaussian around the population's mean. Every
hypothesis is rendered by the coarse proxy at the matching size and matched over image shifts (`match_views`: the
mean edge-orientation agreement times the share of the foreground covered), so the camera's translation across
the image is searched, not sampled: over the whole image at first, then near the population's best. The best
`elite` of each population set its next mean and spread; each population's best hypothesis so far is kept. The
populations are independent, so a wrong start cannot pull the others. With the camera known, only the joints are
drawn.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor
from tqdm import tqdm

from drrobot.fit.placement import MatchScene, PlacementConfig, Placements, match_views
from drrobot.model import RobotModel


@dataclasses.dataclass
class CrossEntropyConfig:
    """Settings of `cross_entropy_search`."""

    populations: int = 8
    """Starting placements grown into populations (the best-scoring ones, at most one per pose and direction)."""
    samples: int = 32
    """Hypotheses drawn per population and iteration."""
    elite: int = 6
    """Best hypotheses of a population that set its next mean and spread."""
    iterations: int = 12
    """Rounds of drawing, scoring and refitting each population."""
    joint_spread: float = 0.5
    """Initial standard deviation of the normalised joints (their range is [-1, 1])."""
    angle_spread_deg: tuple[float, float, float] = (10.0, 20.0, 4.0)
    """Initial standard deviation of the camera's rotation about the robot's centre (degrees), about the camera's
    x axis (tilt: elevation), y axis (pan: azimuth) and optical axis (roll)."""
    depth_spread: float = 0.15
    """Initial standard deviation of the camera's log distance."""
    smoothing: float = 0.7
    """Weight of the elites' spread in the new spread (the rest is the old spread): keeps populations from
    collapsing after one lucky draw."""
    min_spread: float = 0.02
    """Floor of every standard deviation (normalised joints, radians, log distance)."""
    global_iterations: int = 2
    """Iterations matching every image shift; later ones only shifts within `local_radius` pixels (at the matching
    size) of the population's best so far: the robot's centre has found its place in the image by then."""
    local_radius: int = 5
    """Pixels (at the matching size) the local shift search reaches."""
    separation_deg: float = 30.0
    """Starting placements of one pose whose optical axes are closer than this are the same start."""


@dataclasses.dataclass
class Hypotheses:
    """The best hypothesis of each population, best first."""

    joints: Tensor  # [M, J]
    viewmats: Tensor  # [M, 4, 4]
    scores: Tensor  # [M] template scores (higher is better)


def distinct_starts(placements: Placements, count: int, separation_deg: float) -> Tensor:
    """Indices [<= count] of the best placements, skipping one whose pose was taken already with an optical axis
    within `separation_deg` (non-maximum suppression over near-duplicate templates)."""
    axes = placements.viewmats[:, 2, :3]  # [M, 3] optical axes in the world
    limit = math.cos(math.radians(separation_deg))
    taken: list[int] = []
    for i in range(len(placements.scores)):
        if all(placements.pose_index[i] != placements.pose_index[t] or float(axes[i] @ axes[t]) < limit for t in taken):
            taken.append(i)
            if len(taken) == count:
                break
    return torch.tensor(taken, dtype=torch.long)


def _skew(v: Tensor) -> Tensor:
    """[..., 3, 3] cross-product matrices of vectors [..., 3]."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape, 3)


@torch.no_grad()
def cross_entropy_search(
    model: RobotModel,  # a coarse proxy (`drrobot.fit.proxy.coarse_proxy`)
    skin: Tensor,  # [N, L] its skinning weights
    scene: MatchScene,  # the image's edge responses and foreground at the matching size
    joints: Tensor,  # [M, J] each population's starting joints
    viewmats: Tensor,  # [M, 4, 4] and camera (the robot's centre in front of it)
    placement: PlacementConfig,
    config: CrossEntropyConfig | None = None,
    fixed_camera: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> Hypotheses:
    """Each population's best (joints, camera) after `config.iterations` rounds, best first (with a
    `fixed_camera`, the cameras returned are the given ones, quantised to whole pixels of the matching size)."""
    config = config or CrossEntropyConfig()
    spec = model.joint_spec
    device = scene.centre.device
    M, J = joints.shape
    reference = viewmats[:, :3, :3]  # [M, 3, 3]
    centre = reference @ scene.centre + viewmats[:, :3, 3]  # [M, 3] the robot's centre in each camera
    mean = torch.cat([spec.normalize(joints), torch.zeros(M, 3, device=device), centre[:, 2:].log()], dim=-1)
    camera_spread = torch.tensor([*(math.radians(a) for a in config.angle_spread_deg), config.depth_spread])
    spread = torch.cat([torch.full((J,), config.joint_spread), 0 * camera_spread if fixed_camera else camera_spread])
    spread = spread.to(device).expand(M, -1).clone()  # [M, J + 4]
    best = mean.clone()
    best_score = torch.full((M,), -1.0, device=device)
    best_view = viewmats.clone()
    best_shift = (scene.K.diagonal()[:2] * centre[:, :2] / centre[:, 2:]).round().long()  # [M, 2] pixels
    generator = torch.Generator().manual_seed(seed)
    S, rows = config.samples, torch.arange(M, device=device)
    for iteration in tqdm(range(config.iterations), desc="search", disable=not progress, leave=False):
        noise = torch.randn(M, S, mean.shape[1], generator=generator).to(device)
        draws = mean[:, None] + spread[:, None] * noise  # [M, S, J + 4]
        if iteration == 0:
            draws[:, 0] = mean  # the start itself is scored too
        draws[..., :J] = draws[..., :J].clamp(-1.0, 1.0)
        flat = draws.reshape(M * S, -1)
        rotations = torch.linalg.matrix_exp(_skew(flat[:, J : J + 3])) @ reference.repeat_interleave(S, 0)
        local = fixed_camera or iteration >= config.global_iterations
        views, scores, shifts = match_views(model, spec.denormalize(flat[:, :J]), rotations, flat[:, J + 3].exp(),
                                            scene, skin, placement, best_shift.repeat_interleave(S, 0) if local else None,
                                            0 if fixed_camera else config.local_radius)  # fmt: skip
        scores = scores.reshape(M, S)
        top = scores.argmax(dim=1)
        improved = scores[rows, top] > best_score
        best[improved] = draws[rows, top][improved]
        best_view[improved] = views.reshape(M, S, 4, 4)[rows, top][improved]
        best_shift[improved] = shifts.reshape(M, S, 2)[rows, top][improved]
        best_score = torch.maximum(best_score, scores[rows, top])
        elites = draws.gather(1, scores.topk(config.elite, dim=1).indices[..., None].expand(-1, -1, draws.shape[-1]))
        mean = elites.mean(dim=1)
        spread = (config.smoothing * elites.std(dim=1) + (1 - config.smoothing) * spread).clamp_min(config.min_spread)
        if fixed_camera:
            spread[:, J:] = 0.0
    order = best_score.argsort(descending=True)
    return Hypotheses(spec.denormalize(best[order, :J]), best_view[order], best_score[order])
