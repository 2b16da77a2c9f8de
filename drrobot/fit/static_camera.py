"""One static camera, and each frame's joints, from keypoint detections in several frames of a video.

    candidates = static_camera_candidates(model, link_ids, local_points, uv, confidence, K, width)
    best = candidates[0]                     # the lowest robust cost; the others have distinct cameras
    best.viewmat, best.joints, best.frames   # [4, 4], [F', J] for the frames used (indices into uv)

One frame's detections fix a 7-joint arm and its camera only loosely: with detections 1% of the image width off,
single look-alike frames were solved 4-29 degrees and 0.3-2.5 m off. A static camera sees every frame from the
same place while the arm moves, so the frames constrain one camera together. Each frame alone gives
`per_frame` hypotheses (`drrobot.fit.from_keypoints.poses_from_keypoints`), whose cameras are pooled. Each pooled
camera is scored on every frame by the best joints it allows there (Levenberg-Marquardt on the joints alone, from
the prior and every frame's hypotheses), and the `finalists` best are refined together with all frames' joints
(one camera, F poses); the lowest robust cost wins.

The keypoints alone cannot always tell a camera from its mirror image: on look-alike azure (8 keyframes, the
two-look detector) a camera 1.9 m from the truth on the far side, with the arm turned to match, fitted the
detections slightly better (robust cost 0.1737) than the family around the truth (0.1746). Rendering tells them
apart (frame 0's image loss 0.0540 against 0.0512), so `static_camera_candidates` returns distinct solutions for
the image objective to choose from.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from drrobot.fit.from_keypoints import (MIN_KEYPOINTS, KeypointSolveConfig, _Reprojection, distinct_best,
                                        levenberg_marquardt, poses_from_keypoints)  # fmt: skip
from drrobot.model import RobotModel


@dataclasses.dataclass(frozen=True)
class StaticCameraConfig:
    """Settings of `static_camera_candidates`."""

    frames: int = 8
    """Frames (evenly spread over the video) whose detections are solved together."""
    per_frame: int = 3
    """Best camera hypotheses of each frame pooled for scoring."""
    score_steps: int = 15
    """Levenberg-Marquardt iterations fitting a frame's joints under a pooled camera."""
    finalists: int = 6
    """Best-scoring cameras refined jointly with every frame's joints."""
    steps: int = 30
    """Levenberg-Marquardt iterations of that joint refinement."""
    candidates: int = 3
    """Distinct refined solutions `static_camera_candidates` returns (best first): camera centres more than
    `distinct` metres apart."""
    distinct: float = 0.25
    image_frames: int = 2
    """`drrobot.fit.reconstruct`: keyframes (frame 0, then others spread over the video) on which the image
    objective chooses among the candidates."""
    single: KeypointSolveConfig = dataclasses.field(default_factory=KeypointSolveConfig)
    """Each frame's own solve (starts, robust scale, confidence threshold)."""


@dataclasses.dataclass
class StaticCameraSolution:
    viewmat: Tensor  # [4, 4] world -> camera
    joints: Tensor  # [F', J] the used frames' joints
    frames: list[int]  # [F'] which of the given frames were used (enough confident detections)
    cost: float  # robust cost over the used frames' detections (`from_keypoints`' units)


@torch.no_grad()
def static_camera_candidates(
    model: RobotModel,
    link_ids: Tensor,  # [K]
    local_points: Tensor,  # [K, 3] link frame
    uv: Tensor,  # [F, K, 2] detections, pixels
    confidence: Tensor,  # [F, K] in [0, 1]
    K: Tensor,  # [3, 3]
    width: int,
    prior: Tensor | None = None,  # [J] the first start of each frame's solve
    config: StaticCameraConfig | None = None,
) -> list[StaticCameraSolution]:
    """See the module docstring: up to `config.candidates` solutions with distinct cameras, lowest robust cost
    first. Frames with fewer than `MIN_KEYPOINTS` confident detections are left out; a ValueError when none has
    enough."""
    config = config or StaticCameraConfig()
    device = model.device
    uv, K = uv.to(device).float(), K.to(device).float()
    single = config.single
    weight = torch.where(confidence >= single.min_confidence, confidence, torch.zeros_like(confidence)).to(device)
    used = [f for f in range(len(uv)) if int((weight[f] > 0).sum()) >= MIN_KEYPOINTS]
    if not used:
        raise ValueError(f"no frame has {MIN_KEYPOINTS} keypoints detected with confidence >= {single.min_confidence}")
    scale = single.robust_scale * width
    problems = [_Reprojection(model, link_ids, local_points, uv[f], weight[f], K, scale) for f in used]
    cameras, starts, held = [], [], []
    for f in used:
        found = poses_from_keypoints(model, link_ids, local_points, uv[f], confidence[f], K, width, prior, single)
        cameras.append(found.viewmats[: config.per_frame, 0])
        starts.append(found.joints)
        held.append(found.held)
    first = model.joint_spec.denormalize(torch.zeros(model.joint_spec.dof, device=device)) if prior is None else prior
    first = first.to(device)
    cameras = torch.cat(cameras)  # [C, 4, 4]
    starts = torch.cat([first[None], *starts])  # [S, J]
    best_joints, scores = _joints_under(problems, cameras, starts, config.score_steps, first, held)  # [C, F', J], [C]
    top = scores.argsort()[: config.finalists]
    joint = _Reprojection(model, link_ids, local_points, uv[used], weight[used], K, scale)
    joints, viewmats, costs = levenberg_marquardt(joint, best_joints[top].flatten(1), cameras[top], config.steps,
                                                  held=torch.cat(held))  # fmt: skip
    centres = torch.linalg.inv(viewmats)[:, :3, 3]  # [C', 3]
    chosen = distinct_best(costs, torch.cdist(centres, centres) > config.distinct, config.candidates)
    return [StaticCameraSolution(viewmats[i], joints[i].reshape(len(used), -1), used, float(costs[i])) for i in chosen]


def _joints_under(problems: list[_Reprojection], cameras: Tensor, starts: Tensor, steps: int, prior: Tensor,
                  held: list[Tensor]) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Each frame's best joints under each camera (cameras [C, 4, 4], from every start [S, J]; each frame's held
    joints [J] bool at the prior [J]): joints [C, F, J] and the mean cost over the frames [C]."""
    C, S = len(cameras), len(starts)
    views = cameras.repeat_interleave(S, dim=0)  # [C S, 4, 4]
    joints, costs = [], []
    for problem, frame_held in zip(problems, held):
        frame_starts = torch.where(frame_held, prior, starts).repeat(C, 1)  # [C S, J]
        found, _, cost = levenberg_marquardt(problem, frame_starts, views, steps, fixed_camera=True, held=frame_held)
        best = cost.reshape(C, S).argmin(dim=1)  # [C]
        joints.append(found.reshape(C, S, -1)[torch.arange(C), best])
        costs.append(cost.reshape(C, S).min(dim=1).values)
    return torch.stack(joints, dim=1), torch.stack(costs, dim=1).mean(dim=1)
