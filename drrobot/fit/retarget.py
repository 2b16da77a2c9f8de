"""Visual motion retargeting: a joint trajectory [T, J] whose robot moves like 2D point tracks of another video.

The robot's own tracks are exact: the projections of a fixed set of its Gaussians' centres, posed by FK and the
skinning field at every frame and seen by a chosen camera, differentiable with no tracker in the loop. Both
track sets are normalised per video (centre and RMS radius over all frames), so embodiments of other sizes and
cameras at other distances compare; the objective is the mean over frames of the symmetric 2D Chamfer distance
between them, plus a temporal smoothness term and a prior towards the middle of each joint's range.

>>> result = retarget(model, tracks, viewmat, K, RetargetConfig())     # tracks: drrobot.vision.tracks.Tracks
>>> result.joints, result.chamfer_px                                   # [T, J], [T] in the source's pixels

The paper instead ran a point tracker (CoTracker) on the robot's renders and back-propagated through it: pass
`tracker=` (any differentiable `RenderTracker`, e.g. `drrobot.vision.tracks.cotracker_render_tracker`) and
`image_size=` to do that. It costs a rendered video and a tracker pass per step, and the robot's tracks are then
a tracker's estimate rather than exact.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor

from drrobot.errors import UsageError
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.optimize import cached_skinning_weights, render_state
from drrobot.fit.params import LearningRates, PoseParameters
from drrobot.fit.solve import prior_joints
from drrobot.model import RobotModel, project_points
from drrobot.vision.tracks import Tracks

OPAQUE = 0.3  # Gaussians at least this opaque can be tracked

RenderTracker = Callable[[Tensor, Tensor], Tensor]
"""A differentiable point tracker run on the robot's renders: video [T, H, W, 3] in [0, 1] and queries [N, 3]
(frame, x, y in pixels, centres at +0.5) -> tracks [T, N, 2] in pixels."""


@dataclasses.dataclass
class RetargetConfig:
    """How the trajectory is fitted (defaults: seconds to a minute for ~100 frames on a CPU)."""

    steps: int = 300
    """Adam steps over the whole trajectory."""
    lr: float = 0.05
    """Learning rate of the joints in tanh space; decays to 10% by the last step."""
    points: int = 512
    """Robot Gaussians tracked (sampled among the opaque ones)."""
    robot_to_source: float = 0.25
    """Weight of the robot-to-source half of the Chamfer distance (source-to-robot has weight 1). Trackers
    follow corners and edges while the robot's tracks cover its whole surface, so the robot-to-source half
    cannot reach zero; a low weight keeps it from pulling the pose towards where the source has no tracks."""
    smoothness: float = 1.0
    """Weight of the mean squared change of the normalised joints between frames."""
    prior_weight: float = 0.01
    """Weight of the mean squared normalised joint (0 at the middle of the range)."""
    render_size: int = 128
    """With a tracker in the loop: long side (pixels) of the robot video it tracks."""
    seed: int = 0


@dataclasses.dataclass
class RetargetResult:
    joints: Tensor  # [T, J]
    robot_points: Tensor  # [T, M, 2] the robot's tracks in its camera's pixels
    chamfer_px: Tensor  # [T] symmetric Chamfer distance of the robot's tracks (in the source's frame) to the source's
    coverage_px: Tensor  # [T] mean distance of each visible source track to the nearest robot track (source px)
    history: list[float]  # objective per step (the joints are those of its lowest)
    interrupted: bool = False  # stopped by Ctrl-C: the best trajectory so far


def normalize_tracks(points: Tensor, visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """points [T, N, 2] -> (normalised points, centre [2], scale []): centre and RMS radius of the visible ones
    over the whole video."""
    weight = visible.float()[..., None]  # [T, N, 1]
    count = weight.sum().clamp_min(1.0)
    centre = (points * weight).sum((0, 1)) / count  # [2]
    scale = (((points - centre) ** 2).sum(-1, keepdim=True) * weight).sum().div(count).sqrt().clamp_min(1e-6)
    return (points - centre) / scale, centre, scale


def chamfer_2d(a: Tensor, b: Tensor, b_visible: Tensor, a_weight: float = 1.0) -> Tensor:
    """Chamfer distance per frame [T] between point sets a [T, M, 2] and b [T, N, 2] (b's invisible points left
    out): the mean distance to the nearest other point, b to a plus `a_weight` times a to b, over 1 + a_weight
    (1: the symmetric distance)."""
    with torch.no_grad():  # nearest neighbours only; gradients flow through the chosen pairs (as through a min)
        squared = a.square().sum(-1)[:, :, None] + b.square().sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)
        nearest_b = squared.masked_fill(~b_visible[:, None, :], float("inf")).argmin(2)  # [T, M]
        nearest_a = squared.argmin(1)  # [T, N]
    a_to_b = (a - b.gather(1, nearest_b[..., None].expand(-1, -1, 2))).norm(dim=-1).mean(1)  # [T]
    counts = b_visible.float().sum(1).clamp_min(1.0)
    b_to_a = ((b - a.gather(1, nearest_a[..., None].expand(-1, -1, 2))).norm(dim=-1) * b_visible.float()).sum(1) / counts
    return (b_to_a + a_weight * a_to_b) / (1.0 + a_weight)


def compact_visible(points: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
    """Each frame's visible points first: points [T, N, 2], visible [T, N] -> [T, V, 2], [T, V] with V the most
    points visible in one frame (tracks that start and end make N much larger than V)."""
    order = torch.argsort(visible.to(torch.int8), dim=1, descending=True, stable=True)  # visible first
    V = max(int(visible.sum(1).max()), 1)
    keep = order[:, :V]  # [T, V]
    return points.gather(1, keep[..., None].expand(-1, -1, 2)), visible.gather(1, keep)


def robot_track_ids(model: RobotModel, count: int, seed: int = 0) -> Tensor:
    """[M] indices of Gaussians to track: opaque ones, sampled uniformly."""
    with torch.no_grad():
        candidates = torch.nonzero(torch.sigmoid(model.gaussians.opacities) >= OPAQUE).flatten()
    if len(candidates) == 0:
        candidates = torch.arange(len(model.gaussians), device=model.device)
    gen = torch.Generator().manual_seed(seed)
    return candidates[torch.randperm(len(candidates), generator=gen)[:count].to(candidates.device)]


def robot_tracks(model: RobotModel, joints: Tensor, ids: Tensor, viewmat: Tensor, K: Tensor,
                 weights: Tensor | None = None) -> Tensor:  # fmt: skip
    """Pixels [T, M, 2] of Gaussians `ids` [M] at joints [T, J] seen by one camera (viewmat [4, 4], K [3, 3])."""
    T = len(joints)
    g = model.gaussians
    weights = model.skinning(g.means[ids], g.link_ids[ids]) if weights is None else weights  # [M, L]
    link_poses = model.kinematics.link_poses(joints)  # [T, L, 4, 4]
    means = model.skinning_transforms(link_poses, weights).apply_points(g.means[ids])  # [T, M, 3]
    uv, _, _ = project_points(means, viewmat.expand(T, 1, 4, 4), K.expand(T, 1, 3, 3))
    return uv[:, 0]


def tracked_robot(model: RobotModel, joints: Tensor, viewmat: Tensor, K: Tensor, image_size: tuple[int, int],
                  tracker: RenderTracker, count: int, render_size: int, seed: int = 0,
                  skinning_weights: Tensor | None = None) -> Tensor:  # fmt: skip
    """Robot tracks [T, M, 2] in the pixels of the camera (viewmat [4, 4], K [3, 3] for `image_size`) made by
    `tracker` on the robot's renders at joints [T, J], differentiable through the renders and the tracker: M =
    `count` queries on the robot in frame 0 (fewer if it covers fewer pixels)."""
    W, H = image_size
    scale = render_size / max(W, H)
    w, h = max(1, round(W * scale)), max(1, round(H * scale))
    T = len(joints)
    Ks = scale_intrinsics(K, w / W, h / H)
    out = render_state(model, joints, viewmat.expand(T, 1, 4, 4), Ks.expand(T, 1, 3, 3), w, h,
                       skinning_weights=skinning_weights)  # fmt: skip
    with torch.no_grad():  # queries: pixels the robot covers in frame 0
        v, u = torch.nonzero(out.alphas[0, 0, ..., 0] > 0.5, as_tuple=True)
        if len(u) == 0:
            raise UsageError("the robot is not in its camera's view: choose another --view")
        pick = torch.randperm(len(u), generator=torch.Generator().manual_seed(seed))[:count].to(u.device)
        queries = torch.stack([torch.zeros_like(u[pick]), u[pick] + 0.5, v[pick] + 0.5], -1).float()  # [M, 3]
    tracks = tracker(out.images[:, 0], queries)  # [T, M, 2] render pixels
    return tracks / tracks.new_tensor([w / W, h / H])


def retarget(
    model: RobotModel,
    source: Tracks,
    viewmat: Tensor,  # [4, 4] the robot's camera
    K: Tensor,  # [3, 3]
    config: RetargetConfig,
    progress: Callable[[int, float], None] | None = None,
    tracker: RenderTracker | None = None,  # track the robot's renders with it (the paper's way) instead of exactly
    image_size: tuple[int, int] | None = None,  # (W, H) K is for; needed with a tracker
) -> RetargetResult:
    """The joint trajectory [T, J] (T = the source's frames) whose robot tracks match the source's: of the steps'
    trajectories, the one with the lowest objective (a tracker in the loop makes it noisy, so the last is not
    always the best). Ctrl-C stops early and returns the best so far (`interrupted=True`)."""
    if config.steps < 1 or config.points < 1 or config.lr <= 0:
        raise UsageError(f"retarget needs steps >= 1, points >= 1 and lr > 0 (got {config.steps}, {config.points}, "
                         f"{config.lr})")  # fmt: skip
    if tracker is not None and image_size is None:
        raise UsageError("retarget with a tracker needs image_size (the (W, H) the robot camera's K is for)")
    device = model.device
    points = torch.as_tensor(source.points, dtype=torch.float32, device=device)  # [T, N, 2]
    visible = torch.as_tensor(source.visible, device=device)  # [T, N]
    if not visible.any(1).all():
        raise UsageError("some frames have no visible source track: trim the video or track more points")
    points, visible = compact_visible(points, visible)  # [T, V, 2], [T, V]
    target, centre, scale = normalize_tracks(points, visible)
    T, spec = len(points), model.joint_spec
    middle = prior_joints(model, "middle")  # [J]
    eye = torch.eye(4, device=device).expand(T, 1, 4, 4)
    params = PoseParameters(spec, middle.expand(T, -1), eye, torch.eye(3, device=device).expand(T, 1, 3, 3), (1, 1),
                            optimize_camera=False, color_correction=False)  # fmt: skip
    optimizer = torch.optim.Adam(params.param_groups(LearningRates(joints=config.lr)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.1 ** (s / max(config.steps - 1, 1)))
    ids = robot_track_ids(model, config.points, config.seed)
    with torch.no_grad():
        weights = model.skinning(model.gaussians.means[ids], model.gaussians.link_ids[ids])  # [M, L], pose-free
    viewmat, K = viewmat.to(device), K.to(device)

    skin = None if tracker is None else cached_skinning_weights(model)  # [N, L], pose-free: once

    def robot_side(joints: Tensor) -> Tensor:  # [T, J] -> the robot's tracks [T, M, 2] in its camera's pixels
        if tracker is None:
            return robot_tracks(model, joints, ids, viewmat, K, weights)
        return tracked_robot(model, joints, viewmat, K, image_size, tracker, config.points, config.render_size,
                             config.seed, skin)  # fmt: skip

    history, interrupted = [], False
    best_z, best_loss = params.z.detach().clone(), math.inf  # [T, J] the lowest-objective trajectory so far
    try:
        for step in range(config.steps):
            joints = params.joints()  # [T, J]
            pixels = robot_side(joints)  # [T, M, 2]
            robot, _, _ = normalize_tracks(pixels, torch.ones(pixels.shape[:2], dtype=torch.bool, device=device))
            normalized = torch.where(params.limited, spec.normalize(joints), 0.0)  # [T, J]
            loss = (chamfer_2d(robot, target, visible, config.robot_to_source).mean()
                    + config.smoothness * (normalized[1:] - normalized[:-1]).pow(2).sum(1).mean().nan_to_num(0.0)
                    + config.prior_weight * normalized.pow(2).mean())  # fmt: skip
            if loss.item() < best_loss:
                best_z, best_loss = params.z.detach().clone(), loss.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.append(loss.item())
            if progress is not None:
                progress(step, history[-1])
    except KeyboardInterrupt:  # stop early: the trajectory so far
        interrupted = True
    with torch.no_grad():
        params.z.copy_(best_z)
        joints = params.joints()
        pixels = robot_side(joints)  # [T, M, 2]
        robot, _, _ = normalize_tracks(pixels, torch.ones(pixels.shape[:2], dtype=torch.bool, device=device))
        mapped = robot * scale + centre  # [T, M, 2] in the source's pixels
        chamfer_px = chamfer_2d(mapped, points, visible)
        coverage_px = chamfer_2d(mapped, points, visible, a_weight=0.0)
    return RetargetResult(joints.detach(), pixels.detach(), chamfer_px.cpu(), coverage_px.cpu(), history, interrupted)
