"""Fitting on the robot's neighbourhood: the observation cropped to a box around the projected robot.

A robot filmed from 1-2 m covers a small part of the image (Panda-3CAM look-alikes: its keypoints' bounding box
spans 2-19% of the frame), yet rendering and every image term cost per pixel. `robot_box` bounds the hypotheses' posed Gaussians
in each camera, grown by a share of the box's size (the robot moves during the fit) and by the SSIM window;
`crop_observation` cuts that box out of the observation, and `shift_intrinsics` moves the principal point to
match. Pixels outside the box show the background in every hypothesis, so their terms are constant there:
`cropped_weights` rescales each image term by the share of its normaliser the box holds, so the objective on
the box has the same gradients as on the whole image (up to SSIM windows at the box's border) and differs from it
by a constant.

Cropping applies to one instant (Bo = 1) without masks or plug-in terms (a CLIP score looks at the whole image);
`can_crop` says whether an observation and objective qualify.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from drrobot.fit.objectives import Objective, ObjectiveWeights, Observation
from drrobot.model import RobotModel, project_points

_SSIM_HALF_WINDOW = 5  # pixels: the box keeps this much background beyond the robot for SSIM's 11-pixel windows
_WORTH_IT = 0.8  # a box covering more than this share of the image is not cropped to (nothing to gain)


@dataclasses.dataclass(frozen=True)
class Box:
    """The same-sized crop of each camera's image."""

    left: tuple[int, ...]  # [C] first column per camera
    top: tuple[int, ...]  # [C] first row per camera
    width: int
    height: int


def can_crop(observation: Observation, objective: Objective) -> bool:
    """Whether an objective on this observation may be evaluated on a crop (see the module docstring)."""
    return observation.images.shape[0] == 1 and observation.masks is None and not objective.extra


@torch.no_grad()
def robot_box(
    model: RobotModel,
    joints: Tensor,  # [B, J]
    viewmats: Tensor,  # [B, C, 4, 4]
    Ks: Tensor,  # [B, C, 3, 3] at width x height
    width: int,
    height: int,
    grow: float,  # share of the box's longer side added on each side
    skinning_weights: Tensor,  # [N, L]
    base_pose: Tensor | None = None,  # [B, 7]
) -> Box | None:
    """The box [per camera] holding every hypothesis' posed Gaussians (centres), grown; None when it would cover
    most of the image, the robot is behind a camera or (nearly) out of view."""
    means = model.pose_gaussians(joints, base_pose, skinning_weights, appearance=False).means  # [B, N, 3]
    uv, _, in_front = project_points(means, viewmats, Ks)  # [B, C, N, 2], [B, C, N]
    if not bool(in_front.all()):
        return None
    lo = uv.amin(dim=(0, 2))  # [C, 2]
    hi = uv.amax(dim=(0, 2))
    pad = grow * (hi - lo).amax(dim=-1, keepdim=True) + _SSIM_HALF_WINDOW  # [C, 1]
    lo = (lo - pad).floor().clamp_min(0)
    hi = torch.minimum((hi + pad).ceil(), torch.tensor([width, height], dtype=hi.dtype, device=hi.device))
    size = (hi - lo).clamp_min(1).amax(dim=0)  # [2] the largest camera's box, shared
    box_width, box_height = int(size[0]), int(size[1])
    if box_width * box_height > _WORTH_IT * width * height or min(box_width, box_height) <= 2 * _SSIM_HALF_WINDOW:
        return None  # nothing to gain, or the robot is (nearly) out of view
    left = [min(int(x), width - box_width) for x in lo[:, 0]]  # a box grown to the shared size stays inside
    top = [min(int(y), height - box_height) for y in lo[:, 1]]
    return Box(tuple(left), tuple(top), box_width, box_height)


def crop_observation(observation: Observation, box: Box) -> Observation:
    """The observation's pixels inside the box (keypoints moved into the box's pixel coordinates)."""

    def cut(x: Tensor | None) -> Tensor | None:  # [Bo, C, H, W, ...] -> [Bo, C, h, w, ...]
        if x is None:
            return None
        return torch.stack([x[:, c, t : t + box.height, l : l + box.width] for c, (l, t) in
                            enumerate(zip(box.left, box.top))], dim=1)  # fmt: skip

    keypoints = observation.keypoints
    if keypoints is not None:
        offset = torch.tensor([box.left, box.top], dtype=keypoints.uv.dtype, device=keypoints.uv.device).T  # [C, 2]
        keypoints = dataclasses.replace(keypoints, uv=keypoints.uv - offset[:, None])
    return Observation(cut(observation.images), cut(observation.backgrounds), cut(observation.masks), keypoints,
                       cut(observation.moving), cut(observation.still))  # fmt: skip


def shift_intrinsics(Ks: Tensor, box: Box) -> Tensor:
    """Ks [B, C, 3, 3] of the whole image -> of the box (principal point moved by the box's corner)."""
    offset = torch.tensor([box.left, box.top], dtype=Ks.dtype, device=Ks.device).T  # [C, 2]
    shifted = Ks.clone()
    shifted[..., :2, 2] -= offset
    return shifted


def cropped_weights(weights: ObjectiveWeights, whole: Observation, cropped: Observation) -> ObjectiveWeights:
    """Weights that make the objective on `cropped` (`crop_observation` of `whole`) differ from the whole image's
    by a constant: per-pixel means (photometric, edges) scale by the box's share of the pixels, coverage by its
    share of the foreground (exclusion, a share of the rendered robot, keeps its weight: the robot is inside the
    box)."""
    pixels = cropped.width * cropped.height / (whole.width * whole.height)
    changes = {"photometric": weights.photometric * pixels, "edges": weights.edges * pixels}
    if whole.moving is not None:  # coverage_loss's normalisers
        share = cropped.moving.sum().clamp_min(1.0) / whole.moving.sum().clamp_min(1.0)
        changes["coverage"] = weights.coverage * float(share)
    return dataclasses.replace(weights, **changes)
