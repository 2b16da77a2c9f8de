"""Fitting on the robot's neighbourhood: the observation cropped to a box around the projected robot.

A robot filmed from 1-2 m covers a small part of the image (Panda-3CAM look-alikes: its keypoints' bounding box
spans 2-19% of the frame), yet rendering and every image term cost per pixel. `robot_box` bounds the hypotheses' posed Gaussians
in each camera, grown by a share of the box's size (the robot moves during the fit) and by the SSIM window;
`crop_observation` cuts that box out of the observation, and `shift_intrinsics` moves the principal point to
match. Pixels outside the box show the background in every hypothesis, so their terms are constant there:
`cropped_weights` rescales each image term by the share of its normaliser the box holds, so the objective on
the box has the same gradients as on the whole image (up to SSIM windows at the box's border) and differs from it
by a constant.

An observation of several instants, one per hypothesis (Bo = B: keyframes sharing one camera), gets one box per
instant, all of the same size. Cropping applies without masks or plug-in terms (a CLIP score looks at the whole
image); `can_crop` says whether an observation and objective qualify.
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
    """The same-sized crop of each instant's and camera's image."""

    left: tuple[tuple[int, ...], ...]  # [Bo][C] first column per instant and camera
    top: tuple[tuple[int, ...], ...]  # [Bo][C] first row
    width: int
    height: int

    def corners(self, like: Tensor) -> Tensor:
        """The boxes' top-left corners [Bo, C, 2] (x, y) as `like`'s dtype and device."""
        return torch.stack([torch.tensor(self.left), torch.tensor(self.top)], dim=-1).to(like)


def can_crop(observation: Observation, objective: Objective) -> bool:
    """Whether an objective on this observation may be evaluated on a crop (see the module docstring)."""
    return observation.masks is None and not objective.extra


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
    per_hypothesis: bool = False,  # one box per hypothesis (each sees its own instant), else one for all
) -> Box | None:
    """The box [per instant and camera] holding the hypotheses' posed Gaussians (centres), grown; None when it
    would cover most of the image, the robot is behind a camera or (nearly) out of view."""
    means = model.pose_gaussians(joints, base_pose, skinning_weights, appearance=False).means  # [B, N, 3]
    uv, _, in_front = project_points(means, viewmats, Ks)  # [B, C, N, 2], [B, C, N]
    if not bool(in_front.all()):
        return None
    lo, hi = uv.amin(dim=2), uv.amax(dim=2)  # [B, C, 2]
    if not per_hypothesis:
        lo, hi = lo.amin(dim=0, keepdim=True), hi.amax(dim=0, keepdim=True)  # [1, C, 2]
    pad = grow * (hi - lo).amax(dim=-1, keepdim=True) + _SSIM_HALF_WINDOW  # [Bo, C, 1]
    lo = (lo - pad).floor().clamp_min(0)
    hi = torch.minimum((hi + pad).ceil(), torch.tensor([width, height], dtype=hi.dtype, device=hi.device))
    size = (hi - lo).clamp_min(1).flatten(0, 1).amax(dim=0)  # [2] the largest box, shared
    box_width, box_height = int(size[0]), int(size[1])
    if box_width * box_height > _WORTH_IT * width * height or min(box_width, box_height) <= 2 * _SSIM_HALF_WINDOW:
        return None  # nothing to gain, or the robot is (nearly) out of view
    left = lo[..., 0].clamp_max(width - box_width).int().tolist()  # a box grown to the shared size stays inside
    top = lo[..., 1].clamp_max(height - box_height).int().tolist()
    return Box(tuple(map(tuple, left)), tuple(map(tuple, top)), box_width, box_height)


def crop_observation(observation: Observation, box: Box) -> Observation:
    """The observation's pixels inside the box (keypoints moved into the box's pixel coordinates)."""

    def cut(x: Tensor | None) -> Tensor | None:  # [Bo, C, H, W, ...] -> [Bo, C, h, w, ...]
        if x is None:
            return None
        return torch.stack([torch.stack([x[b, c, t : t + box.height, l : l + box.width] for c, (l, t) in
                                         enumerate(zip(lefts, tops))]) for b, (lefts, tops) in
                            enumerate(zip(box.left, box.top))])  # fmt: skip

    keypoints = observation.keypoints
    if keypoints is not None:
        keypoints = dataclasses.replace(keypoints, uv=keypoints.uv - box.corners(keypoints.uv)[:, :, None])
    return Observation(cut(observation.images), cut(observation.backgrounds), cut(observation.masks), keypoints,
                       cut(observation.moving), cut(observation.still))  # fmt: skip


def shift_intrinsics(Ks: Tensor, box: Box) -> Tensor:
    """Ks [B, C, 3, 3] of the whole image -> of the box (principal point moved by the box's corner; B = Bo, or one
    box for all)."""
    shifted = Ks.clone()
    shifted[..., :2, 2] -= box.corners(Ks)
    return shifted


def cropped_weights(weights: ObjectiveWeights, whole: Observation, cropped: Observation) -> ObjectiveWeights:
    """Weights that make the objective on `cropped` (`crop_observation` of `whole`) differ from the whole image's
    by a constant: per-pixel means (photometric, edges) scale by the box's share of the pixels, coverage by its
    share of the foreground (exclusion, a share of the rendered robot, keeps its weight: the robot is inside the
    box). That share is pooled over the instants and cameras (a weight is one number), so with several of them the
    coverage term's gradients are exact only where each box holds the same share of its own foreground (shadows or
    background-model noise outside one box weigh that instant's coverage slightly up)."""
    pixels = cropped.width * cropped.height / (whole.width * whole.height)
    changes = {"photometric": weights.photometric * pixels, "edges": weights.edges * pixels}
    if whole.moving is not None:  # coverage_loss's normalisers
        share = cropped.moving.sum().clamp_min(1.0) / whole.moving.sum().clamp_min(1.0)
        changes["coverage"] = weights.coverage * float(share)
    return dataclasses.replace(weights, **changes)
