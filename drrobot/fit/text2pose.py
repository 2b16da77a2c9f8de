"""Joints from an image score of renders: text-to-pose with CLIP (Dr. Robot section 3.3), or any
differentiable score of what the robot looks like.

Each step renders every start's pose from several random cameras around the robot, composites the renders over
random backgrounds (plain colours, blurred noise, checkerboards), takes a random crop, and scores the images;
Adam raises the mean score minus a prior keeping the joints near the middle of their range. Random views,
backgrounds and crops (as DreamFields does) keep the pose from fooling the scorer with one view's pixels.
Several starts run side by side for the first steps; the best continues alone.

>>> result = optimize_pose_for_score(model, ScoreFn, TextPoseConfig(steps=200))
>>> result.joints                                       # [J] radians / metres, the best pose found
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from drrobot.fit.cameras import Cameras
from drrobot.errors import UsageError
from drrobot.fit.params import LearningRates, PoseParameters
from drrobot.model import RobotModel
from drrobot.renders import cameras_around, framing_distance, robot_bounds

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""(images [B, H, W, 3] in [0, 1], alphas [B, H, W, 1] robot coverage) -> scores [B], higher is better."""


@dataclasses.dataclass
class TextPoseConfig:
    """How the pose is searched (defaults: a few minutes on 2 CPU cores with ViT-B/32)."""

    steps: int = 200
    """Adam steps in all (the multi-start phase included)."""
    starts: int = 4
    """Random starting poses optimised side by side during the first `start_steps`; the best continues."""
    start_steps: int = 40
    views: int = 3
    """Random cameras per pose and step."""
    resolution: int = 128
    """Render size (square); the scorer resizes to its own input size."""
    lr: float = 0.08
    """Adam learning rate of the joints in tanh space; decays to 10% by the last step."""
    prior_weight: float = 0.02
    """Weight of the mean squared normalised joint (0 at the middle of the range, 1 at a limit)."""
    elevation_deg: tuple[float, float] = (-10.0, 50.0)
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    fovy_deg: float = 40.0
    crop_scale: tuple[float, float] = (0.7, 1.0)
    """Side of the random square crop as a fraction of the render (1: no crop)."""
    appearance: bool = True
    """Render with the appearance field (what the model looks like); False is faster."""
    snapshot_every: int = 5
    """Steps between frames of the optimisation video (rendered from one fixed camera)."""
    snapshot_azimuth_deg: float = 45.0
    seed: int = 0


@dataclasses.dataclass
class TextPoseResult:
    joints: Tensor  # [J] the best pose (highest smoothed score of the continuing start)
    score: float  # its smoothed score
    history: list[float]  # [steps] mean score of the continuing pose per step (of every start, in phase 1: the best)
    snapshots: list[Tensor]  # frames [H, W, 4] premultiplied RGBA of the current pose from one camera
    snapshot_camera: Cameras  # that camera (1 view)
    interrupted: bool = False  # stopped by Ctrl-C: the best pose so far


def optimize_pose_for_score(
    model: RobotModel,
    score: ScoreFn,
    config: TextPoseConfig,
    progress: Callable[[int, float], None] | None = None,  # called after each step with (step, score)
) -> TextPoseResult:
    """The pose whose renders `score` rates highest (see the module docstring). Ctrl-C stops early and
    returns the best pose so far (`interrupted=True`)."""
    check_config(config)
    device = model.device
    gen = torch.Generator().manual_seed(config.seed)
    spec = model.joint_spec
    starts = _random_poses(model, config.starts, gen).to(device)  # [S, J]
    eye = torch.eye(4, device=device).expand(config.starts, 1, 4, 4)
    params = PoseParameters(spec, starts, eye, torch.eye(3, device=device).expand(config.starts, 1, 3, 3), (1, 1),
                            optimize_camera=False, color_correction=False)  # fmt: skip
    optimizer = torch.optim.Adam(params.param_groups(LearningRates(joints=config.lr)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.1 ** (s / max(config.steps - 1, 1)))
    centre, radius = robot_bounds(model, _random_poses(model, 16, gen).to(device))
    distance = framing_distance(radius, config.fovy_deg, config.resolution, config.resolution)
    size = (config.fovy_deg, config.resolution, config.resolution)
    snapshot_camera = cameras_around(centre, distance, [config.snapshot_azimuth_deg], [20.0], *size)
    weights = model.skinning_weights().detach()  # [N, L]
    history, snapshots = [], []
    smoothed = torch.full((config.starts,), float("nan"))
    best = (float("-inf"), params.joints()[0].detach().clone())
    alive = torch.arange(config.starts)
    interrupted = False
    try:
        for step in range(config.steps):
            if step == config.start_steps and len(alive) > 1:
                alive = alive[smoothed[alive].argmax()][None]  # the best start continues alone
            joints = params.joints()[alive]  # [S', J]
            cams = cameras_around(centre, distance, _uniform(gen, config.azimuth_deg, config.views * len(alive)),
                                  _uniform(gen, config.elevation_deg, config.views * len(alive)), *size)  # fmt: skip
            render = model.render(joints, cams.viewmats.view(len(alive), config.views, 4, 4),
                                  cams.Ks.view(len(alive), config.views, 3, 3), config.resolution, config.resolution,
                                  skinning_weights=weights, appearance=config.appearance)  # fmt: skip
            rgb = render.images.flatten(0, 1)  # [S' V, H, W, 3] premultiplied
            alpha = render.alphas.flatten(0, 1)  # [S' V, H, W, 1]
            images = rgb + (1 - alpha) * _backgrounds(len(rgb), config.resolution, gen).to(device)
            images, alpha = _random_crop(torch.cat([images, alpha], -1), config.crop_scale, gen).split([3, 1], -1)
            scores = score(images, alpha).view(len(alive), config.views).mean(1)  # [S']
            prior = torch.where(params.limited, spec.normalize(joints), 0.0).pow(2).mean(1)  # [S'], limited joints
            loss = (-scores + config.prior_weight * prior).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                current = scores.detach().cpu()
                previous = smoothed[alive]
                smoothed[alive] = torch.where(previous.isnan(), current, 0.8 * previous + 0.2 * current)
                lead = int(smoothed[alive].argmax())
                history.append(float(current[lead]))
                if step >= config.start_steps and float(smoothed[alive][lead]) > best[0]:
                    best = (float(smoothed[alive][lead]), joints[lead].detach().clone())
                if step % config.snapshot_every == 0 or step == config.steps - 1:
                    snapshots.append(_snapshot(model, joints[lead], snapshot_camera, weights, config))
            if progress is not None:
                progress(step, history[-1])
    except KeyboardInterrupt:
        interrupted = True
    if best[0] == float("-inf"):  # stopped (or all steps spent) in the multi-start phase: its current leader
        lead = int(torch.nan_to_num(smoothed[alive], nan=float("-inf")).argmax())
        best = (float(smoothed[alive][lead]), params.joints()[alive][lead].detach().clone())
    return TextPoseResult(best[1], best[0], history, snapshots, snapshot_camera, interrupted)


def check_config(config: TextPoseConfig) -> None:
    """UsageError naming each setting that cannot work."""
    problems = [f"{name} must be >= 1 (got {getattr(config, name)})"
                for name in ("steps", "starts", "views", "resolution", "snapshot_every") if getattr(config, name) < 1]  # fmt: skip
    if not 0 < config.crop_scale[0] <= config.crop_scale[1] <= 1:
        problems.append(f"crop_scale must satisfy 0 < low <= high <= 1 (got {config.crop_scale})")
    if not -90 < config.elevation_deg[0] <= config.elevation_deg[1] < 90:
        problems.append(f"elevation_deg must lie in (-90, 90), low <= high (got {config.elevation_deg})")
    if config.lr <= 0 or config.prior_weight < 0:
        problems.append(f"lr must be > 0 and prior_weight >= 0 (got {config.lr}, {config.prior_weight})")
    if problems:
        raise UsageError("invalid text-to-pose settings: " + "; ".join(problems))


def _random_poses(model: RobotModel, count: int, gen: torch.Generator) -> Tensor:
    """[count, J] uniform in the middle 80% of each joint's range (continuous joints: any angle)."""
    spec = model.joint_spec
    u = 0.8 * (2 * torch.rand(count, spec.dof, generator=gen) - 1)  # [count, J] in [-0.8, 0.8]
    joints = spec.denormalize(u.to(model.joint_lower))
    return torch.where(torch.as_tensor(spec.continuous, device=joints.device), math.pi * u.to(joints), joints)


def _uniform(gen: torch.Generator, bounds: tuple[float, float], count: int) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(count, generator=gen)


def _backgrounds(count: int, size: int, gen: torch.Generator) -> Tensor:
    """[count, size, size, 3]: per image a plain colour, blurred noise or a checkerboard, at random."""
    kind = torch.randint(0, 3, (count,), generator=gen)
    plain = torch.rand(count, 1, 1, 3, generator=gen).expand(count, size, size, 3)
    noise = F.interpolate(torch.rand(count, 3, 8, 8, generator=gen), size=(size, size), mode="bicubic",
                          align_corners=False).clamp(0, 1).permute(0, 2, 3, 1)  # fmt: skip
    cells = torch.randint(4, 16, (1,), generator=gen).item()
    grid = torch.arange(size) * cells // size
    board = ((grid[:, None] + grid[None, :]) % 2).float()[None, :, :, None]  # [1, H, W, 1]
    colours = torch.rand(count, 2, 3, generator=gen)
    checker = colours[:, None, None, 0] * board + colours[:, None, None, 1] * (1 - board)
    kind = kind[:, None, None, None]
    return torch.where(kind == 0, plain, torch.where(kind == 1, noise, checker))


def _random_crop(images: Tensor, scale: tuple[float, float], gen: torch.Generator) -> Tensor:
    """A random square crop of each image [B, H, W, D], resized back to H x W (differentiable, bilinear)."""
    B, H, W, _ = images.shape
    side = _uniform(gen, scale, B)  # [B] fraction of the image
    shift = (1 - side)[:, None] * (2 * torch.rand(B, 2, generator=gen) - 1)  # [B, 2] centre offset, [-1, 1] units
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side, side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images), (B, images.shape[-1], H, W), align_corners=False)
    return F.grid_sample(images.permute(0, 3, 1, 2), grid, align_corners=False).permute(0, 2, 3, 1)


@torch.no_grad()
def _snapshot(model: RobotModel, joints: Tensor, camera: Cameras, weights: Tensor, config: TextPoseConfig) -> Tensor:
    out = model.render(joints[None], camera.viewmats[None], camera.Ks[None], config.resolution, config.resolution,
                       skinning_weights=weights, appearance=config.appearance)  # fmt: skip
    return torch.cat([out.images[0, 0], out.alphas[0, 0]], -1).clamp(0, 1).cpu()  # [H, W, 4]
