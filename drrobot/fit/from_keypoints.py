"""Joints and camera from 2D keypoint detections alone: many starts, each solved in closed form then refined.

    hypotheses = poses_from_keypoints(model, link_ids, local_points, uv, confidence, K)
    hypotheses.joints, hypotheses.viewmats, hypotheses.errors     # [M, J], [M, 1, 4, 4], [M] best first

With the camera unknown, the keypoints constrain the joints and the camera together but not convexly, so
`starts` joint poses (the prior, then random ones in the limits) each get their camera from the direct linear
transform (DLT) of their own 3D keypoints to the detections, reweighted twice by a Cauchy weight of the
reprojection error (detections that belong to another start's arm stop pulling). All starts are then refined
together by an iteratively reweighted Levenberg-Marquardt on the joints (kept in their limits) and the camera
against the same robust error, pure kinematics with no rendering (~1 s for 256 starts on 2 CPU cores). The `keep`
best with different joints are returned for the image-based refinement to choose from.

Joints whose whole travel moves no detected keypoint by twice `robust_scale`, judged at the best solution, are
then held at the prior and the rest solved again (`hold_unseen`; the Panda's fingers: 40 mm of travel, 0-17 px of
640 at the look-alikes' 1-2 m, where the detector's finger keypoints are 15-18 px off): the least squares would
send them to whichever limit the detections' noise favours, where the refinement's tanh parameterisation barely
moves them (slope 0.04 at 0.98 of the way).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from drrobot.fit.cameras import rigid
from drrobot.fit.objectives import link_points
from drrobot.model import RobotModel, project_points


MIN_KEYPOINTS = 6  # the DLT's minimum


@dataclasses.dataclass(frozen=True)
class KeypointSolveConfig:
    """Starts, refinement and selection of `poses_from_keypoints`."""

    starts: int = 256
    steps: int = 30
    """Levenberg-Marquardt iterations."""
    robust_scale: float = 0.03
    """Cauchy scale of the reprojection error, as a fraction of the image width (errors well above it count
    little: a wrong detection cannot drag the fit)."""
    min_confidence: float = 0.05
    """Detections below this confidence are left out."""
    keep: int = 6
    """Hypotheses returned (best first), each differing from the better ones by > `distinct` rad in some joint."""
    distinct: float = 0.3
    hold_unseen: float = 2.0
    """Hold at the prior the joints whose whole travel moves no detected keypoint by this many `robust_scale`s (0:
    none): with the detections' noise about one scale, a travel of two locates such a joint no better than to a
    quarter of it or so."""
    seed: int = 0

    def hold_threshold(self, width: int) -> float:
        """Pixels (of an image `width` wide) a joint's sweep must move some detected keypoint by not to be held."""
        return self.hold_unseen * self.robust_scale * width


@dataclasses.dataclass
class KeypointHypotheses:
    joints: Tensor  # [M, J]
    viewmats: Tensor  # [M, 1, 4, 4]
    errors: Tensor  # [M] robust cost: mean Cauchy loss of the reprojection errors in units of the robust scale; ascending
    held: Tensor  # [J] bool: joints held at the prior (`KeypointSolveConfig.hold_unseen`)


def poses_from_keypoints(
    model: RobotModel,
    link_ids: Tensor,  # [K]
    local_points: Tensor,  # [K, 3] link frame
    uv: Tensor,  # [K, 2] detections, pixels
    confidence: Tensor,  # [K] in [0, 1]
    K: Tensor,  # [3, 3] intrinsics of the image
    width: int,
    prior: Tensor | None = None,  # [J] the first start (default: the middle of the limits)
    config: KeypointSolveConfig | None = None,
    known_joints: bool = False,  # `prior` is the pose (a robot log): only the camera is solved, from one start
    viewmat: Tensor | None = None,  # [4, 4] the camera, when known: only the joints are solved
) -> KeypointHypotheses:
    """See the module docstring."""
    config = config or KeypointSolveConfig()
    device = model.device
    weight = torch.where(confidence >= config.min_confidence, confidence, torch.zeros_like(confidence)).to(device)
    if int((weight > 0).sum()) < MIN_KEYPOINTS:
        raise ValueError(f"only {int((weight > 0).sum())} keypoints detected with confidence >= "
                         f"{config.min_confidence}; the camera needs 6")  # fmt: skip
    spec = model.joint_spec
    generator = torch.Generator().manual_seed(config.seed)
    random = spec.denormalize((torch.rand(config.starts, spec.dof, generator=generator) * 2 - 1).to(device))
    first = spec.denormalize(torch.zeros(spec.dof, device=device)) if prior is None else prior.to(device)
    joints = first[None] if known_joints else torch.cat([first[None], random[1:]])  # [S, J]
    uv, K = uv.to(device).float(), K.to(device).float()
    scale = config.robust_scale * width
    problem = _Reprojection(model, link_ids, local_points, uv, weight, K, scale)
    with torch.no_grad():
        points = _keypoints_world(model, joints, link_ids, local_points)  # [S, K, 3]
        if viewmat is None:
            viewmats = robust_dlt(points, uv, weight, K, scale)  # [S, 4, 4]
        else:
            viewmats = viewmat.to(device).float().expand(len(joints), 4, 4).clone()
    pivots = points.mean(1)  # [S, 3]
    depth = (viewmats[:, :3, :3] @ pivots[..., None])[:, 2, 0] + viewmats[:, 2, 3]
    usable = (depth > 0.05) & viewmats.flatten(1).isfinite().all(1)  # the DLT put the robot in front
    if not usable.any():
        raise ValueError("no start placed the robot in front of the camera; are the detections of this robot?")
    held = torch.zeros(spec.dof, dtype=torch.bool, device=device)
    with torch.no_grad():
        joints, viewmats, costs = levenberg_marquardt(problem, joints[usable], viewmats[usable], config.steps,
                                                      fixed_joints=known_joints, fixed_camera=viewmat is not None)  # fmt: skip
        if config.hold_unseen > 0 and not known_joints:  # swept from the best solution; the rest solved again
            best = int(costs.argmin())
            held = unseen_joints(model, link_ids, local_points, weight, joints[best], viewmats[best], K,
                                 config.hold_threshold(width))  # fmt: skip
            if held.any():
                joints, viewmats, costs = levenberg_marquardt(problem, torch.where(held, first, joints), viewmats,
                                                              config.steps, fixed_camera=viewmat is not None,
                                                              held=held)  # fmt: skip
    apart = torch.cdist(joints, joints, p=float("inf")) > config.distinct  # [M, M] some joint differs
    order = torch.tensor(distinct_best(costs, apart, config.keep), device=joints.device)
    return KeypointHypotheses(joints[order], viewmats[order][:, None], costs[order], held)


def unseen_joints(
    model: RobotModel,
    link_ids: Tensor,  # [K]
    local_points: Tensor,  # [K, 3] link frame
    weight: Tensor,  # [K] the detections' weights: 0 where not detected
    pose: Tensor,  # [J] the pose each joint is swept from
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    threshold: float,  # pixels
    samples: int = 5,
) -> Tensor:
    """Joints [J] bool whose sweep over their whole travel (`samples` points, the others at `pose`) moves no
    detected keypoint's projection by `threshold` or more: the detections cannot place them. Never a continuous
    joint, nor anything when `viewmat` does not put the keypoints in front of the camera."""
    spec = model.joint_spec
    J = spec.dof
    levels = torch.linspace(-1, 1, samples, device=pose.device)  # [S] normalised positions along the travel
    swept = spec.normalize(pose).expand(J, samples, J).clone()  # [J, S, J]
    swept[torch.arange(J), :, torch.arange(J)] = levels
    points = _keypoints_world(model, spec.denormalize(swept.reshape(J * samples, J)), link_ids, local_points)
    projected, _, in_front = project_points(points, viewmat.reshape(1, 1, 4, 4).expand(J * samples, 1, 4, 4),
                                            K.reshape(1, 1, 3, 3).expand(J * samples, 1, 3, 3))  # fmt: skip
    projected = projected[:, 0].reshape(J, samples, -1, 2)  # [J, S, K, 2]
    detected = weight > 0
    if not bool(in_front[:, 0][:, detected].all()) or not bool(projected[:, :, detected].isfinite().all()):
        return torch.zeros(J, dtype=torch.bool, device=pose.device)
    extent = (projected.amax(dim=1) - projected.amin(dim=1)).norm(dim=-1)  # [J, K] each keypoint's sweep
    moves = (extent * detected).amax(dim=-1) >= threshold  # [J]
    return ~moves & ~torch.as_tensor(spec.continuous, device=pose.device)


class _Reprojection:
    """Robust reprojection residuals of hypotheses: joints [S, F J] (F frames, each its own pose, one after
    another) seen by one camera each (viewmats [S, 4, 4]); detections uv [F, K, 2] with weights [F, K] (F = 1:
    [K, 2], [K])."""

    def __init__(self, model, link_ids, local_points, uv, weight, K, scale):
        self.model, self.link_ids, self.local_points = model, link_ids, local_points
        self.uv, self.weight = uv.reshape(-1, *uv.shape[-2:]), weight.reshape(-1, weight.shape[-1])  # [F, K, 2], [F, K]
        self.K, self.scale = K, scale
        self.frames = len(self.uv)

    def points(self, joints: Tensor) -> Tensor:
        """World keypoints [S, F K, 3] of joints [S, F J]."""
        S = len(joints)
        flat = _keypoints_world(self.model, joints.reshape(S * self.frames, -1), self.link_ids, self.local_points)
        return flat.reshape(S, -1, 3)

    def errors(self, joints: Tensor, viewmats: Tensor) -> Tensor:
        """Reprojection error vectors [S, F K, 2] in units of `scale` (points behind the camera: large)."""
        points = self.points(joints)  # [S, F K, 3]
        projected, _, in_front = project_points(points, viewmats[:, None], self.K.expand(len(joints), 1, 3, 3))
        error = ((projected[:, 0] - self.uv.reshape(-1, 2)) / self.scale).clamp(-1e3, 1e3)
        return torch.where(in_front[:, 0, :, None], error, torch.full_like(error, 1e3))

    def cost(self, errors: Tensor) -> Tensor:
        """Weighted mean Cauchy loss [S] of error vectors [S, F K, 2] over every frame's detections."""
        weight = self.weight.reshape(-1)
        return (torch.log1p(errors.square().sum(-1)) * weight).sum(-1) / weight.sum()

    def pivots(self, joints: Tensor, viewmats: Tensor) -> Tensor:
        """The keypoints' centre (over all frames) in each camera's frame [S, 3]."""
        centre = self.points(joints).mean(1)  # [S, 3]
        return (viewmats[..., :3, :3] @ centre[..., None])[..., 0] + viewmats[..., :3, 3]


def levenberg_marquardt(problem: _Reprojection, joints: Tensor, viewmats: Tensor, steps: int, eps: float = 1e-3,
                        fixed_joints: bool = False, fixed_camera: bool = False,
                        held: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Batched, iteratively reweighted Levenberg-Marquardt on the joints (kept in their limits) and a camera
    correction (rotation about the keypoints' centre and translation, camera frame): joints [S, F J] (the
    problem's F frames' poses), viewmats [S, 4, 4] -> refined joints, viewmats and costs [S]. Jacobians by
    forward differences of `eps`; `fixed_joints`: the camera alone, `fixed_camera`: the joints alone; `held` [F J]
    or [J] (the same in every frame) bool: joints never moved."""
    spec, F = problem.model.joint_spec, problem.frames
    lower, upper = (torch.as_tensor(v, dtype=joints.dtype, device=joints.device).repeat(F) for v in (spec.lower, spec.upper))
    continuous = torch.as_tensor(spec.continuous, device=joints.device).repeat(F)  # [F J] unlimited: wrapped
    S, J = joints.shape
    P = J + 6
    free = torch.cat([torch.full((J,), float(not fixed_joints)), torch.full((6,), float(not fixed_camera))]).to(joints.device)
    if held is not None:
        free[:J] *= (~held.to(joints.device)).float().repeat(J // len(held))
    damping = torch.full((S,), 1e-2, device=joints.device)
    errors = problem.errors(joints, viewmats)
    cost = problem.cost(errors)
    for _ in range(steps):
        w = (problem.weight.reshape(-1) / (1 + errors.square().sum(-1))).sqrt()  # [S, F K] IRLS weights (Cauchy)
        residual = (errors * w[..., None]).reshape(S, -1)  # [S, 2 F K]
        pivots = problem.pivots(joints, viewmats)  # [S, 3]
        probes = torch.eye(P, device=joints.device) * eps  # [P, P]
        tried_joints = (joints[:, None] + probes[None, :, :J]).reshape(-1, J)
        tried_views = _moved(viewmats[:, None].expand(S, P, 4, 4), probes[None, :, J:].expand(S, P, 6),
                             pivots[:, None].expand(S, P, 3))  # fmt: skip
        moved = problem.errors(tried_joints, tried_views.reshape(-1, 4, 4)).reshape(S, P, -1, 2)
        jacobian = ((moved * w[:, None, :, None]).reshape(S, P, -1) - residual[:, None]) / eps  # [S, P, 2 F K]
        A = jacobian @ jacobian.transpose(1, 2)  # [S, P, P]
        g = jacobian @ residual[..., None]  # [S, P, 1]
        diagonal = torch.diagonal(A, dim1=1, dim2=2)
        ridge = damping[:, None] * diagonal + 1e-6 * (1 + diagonal.mean(-1, keepdim=True))  # [S, P]
        step, info = torch.linalg.solve_ex(A + torch.diag_embed(ridge), -g)  # [S, P, 1]
        solved = (info == 0) & step.isfinite().all(1)[:, 0]  # [S] a singular system: no step, more damping
        step = torch.where(solved[:, None], step[..., 0], torch.zeros_like(step[..., 0])) * free  # held: no move
        new_joints = joints + step[:, :J]
        wrapped = torch.remainder(new_joints + torch.pi, 2 * torch.pi) - torch.pi
        new_joints = torch.where(continuous, wrapped, torch.minimum(torch.maximum(new_joints, lower), upper))
        new_views = _moved(viewmats, step[:, J:], pivots)
        new_errors = problem.errors(new_joints, new_views)
        new_cost = problem.cost(new_errors)
        better = new_cost < cost
        joints = torch.where(better[:, None], new_joints, joints)
        viewmats = torch.where(better[:, None, None], new_views, viewmats)
        errors = torch.where(better[:, None, None], new_errors, errors)
        cost = torch.where(better, new_cost, cost)
        damping = torch.where(better, damping * 0.3, damping * 10).clamp(1e-6, 1e6)
    return joints, viewmats, cost


def _moved(viewmats: Tensor, delta: Tensor, pivots: Tensor) -> Tensor:
    """viewmats [..., 4, 4] turned by the axis-angle delta[..., :3] about `pivots` [..., 3] (camera frame) and
    shifted by delta[..., 3:] (camera frame, metres)."""
    w = delta[..., :3]
    zero = torch.zeros_like(w[..., 0])
    skew = torch.stack([torch.stack([zero, -w[..., 2], w[..., 1]], -1), torch.stack([w[..., 2], zero, -w[..., 0]], -1),
                        torch.stack([-w[..., 1], w[..., 0], zero], -1)], -2)  # fmt: skip
    R = torch.linalg.matrix_exp(skew)  # [..., 3, 3]
    t = (R @ (viewmats[..., :3, 3] - pivots)[..., None])[..., 0] + pivots + delta[..., 3:]
    return rigid(R @ viewmats[..., :3, :3], t)


def robust_dlt(points: Tensor, uv: Tensor, weight: Tensor, K: Tensor, scale: float, rounds: int = 3) -> Tensor:
    """World->camera viewmats [S, 4, 4] mapping world points [S, K, 3] onto pixels uv [K, 2] under K [3, 3]: the
    weighted DLT, its rotation made orthonormal, then reweighted by a Cauchy weight of `scale` px (`rounds` solves)."""
    S = len(points)
    normalized = torch.cat([uv, torch.ones_like(uv[:, :1])], -1) @ torch.linalg.inv(K).T  # [K, 3]
    x, y = normalized[:, 0], normalized[:, 1]
    centre = points.mean(1, keepdim=True)  # [S, 1, 3] conditioning: centred, unit spread
    spread = (points - centre).norm(dim=-1).mean(1).clamp_min(1e-6)[:, None, None]
    X = torch.cat([(points - centre) / spread, torch.ones_like(points[..., :1])], -1)  # [S, K, 4]
    zeros = torch.zeros_like(X)
    w = weight.expand(S, -1)
    for _ in range(rounds):
        rows = torch.cat([torch.cat([X, zeros, -x[:, None] * X], -1), torch.cat([zeros, X, -y[:, None] * X], -1)], 1)
        rows = rows * w.repeat(1, 2).sqrt()[..., None]  # [S, 2K, 12]
        P = torch.linalg.svd(rows).Vh[:, -1].reshape(S, 3, 4)
        P = P * torch.linalg.det(P[:, :, :3]).sign()[:, None, None]  # a proper rotation
        U, sigma, Vh = torch.linalg.svd(P[:, :, :3])
        R = U @ Vh  # [S, 3, 3]
        t = P[:, :, 3] / sigma.mean(-1, keepdim=True)  # [S, 3]: x_cam ~ R (X - c) / s + t
        viewmats = rigid(R, spread[:, 0] * t - (R @ centre[:, 0, :, None])[..., 0])  # the same rays, metric
        projected, _, in_front = project_points(points, viewmats[:, None], K.expand(S, 1, 3, 3))
        error = (projected[:, 0] - uv).norm(dim=-1)  # [S, K]
        error = torch.where(in_front[:, 0] & error.isfinite(), error, torch.full_like(error, torch.inf))
        w = weight / (1 + (error / scale).square())  # 0 behind the camera
    return viewmats


def _keypoints_world(model: RobotModel, joints: Tensor, link_ids: Tensor, local_points: Tensor) -> Tensor:
    """[S, J] -> world keypoints [S, K, 3]."""
    return link_points(model.kinematics.link_poses(joints), link_ids, local_points)


def distinct_best(costs: Tensor, apart: Tensor, keep: int) -> list[int]:
    """Indices of up to `keep` entries, lowest cost [M] first, each `apart` [M, M] bool from every one chosen
    before it."""
    chosen: list[int] = []
    for index in costs.argsort().tolist():
        if all(bool(apart[index, c]) for c in chosen):
            chosen.append(index)
        if len(chosen) == keep:
            break
    return chosen
