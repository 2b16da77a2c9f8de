"""Backgrounds (the scene without the robot) for fitting real images, and the foreground they imply.

Which one applies:
- `median_background`: a static camera filming a moving robot (Panda-3CAM, most lab videos). The temporal median
  of the frames removes whatever moves; parts that never move (the base) stay in it.
  A slow robot covers some pixels in most frames, so the plain median still shows it there:
  `robot_free_background` takes a bright quantile over only the frames a first fit says the robot leaves free
  (the robot's shadows, which only darken, linger in the median too), and fills the pixels it never leaves (the
  base) from their surroundings. A base left in the background hides its own orientation: where the render
  leaves it uncovered the background shows it anyway, so turning the camera about the base's axis against joint 1
  (which changes only the base in the image) cost nearly nothing, and on look-alike kinect360 (truth, 320x240, the
  box around the base) the loss was lowest 0.8 rad from the truth, at the end of the range tried. Filled from the
  floor around it, the loss is lowest 0.1 rad from the truth, also when the region is taken from a fit 0.3 rad off.
- `masked_background`: the user has robot masks (or a segmentation model, see `Segmenter`): the image outside
  the mask, the mask filled with the median colour of the rest.
- `border_background`: one image, no mask, a roughly uniform backdrop (renders, studio shots): the median colour
  of the image border. A cluttered backdrop without a mask or a video will mislead it: give masks then.

Images are float tensors [..., H, W, 3] in [0, 1].
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

Segmenter = Callable[[np.ndarray], np.ndarray]
"""A hook for a segmentation model: image [H, W, 3] uint8 -> robot mask [H, W] (bool or [0, 1] float)."""

FOREGROUND_THRESHOLD = 0.12  # max channel difference from the background that counts as foreground
STILL_THRESHOLD = 0.04  # max channel difference from the background that counts as the background unchanged
LINGERING_SHADOWS = 1.5  # a plain temporal median may be this much darker than a frame without the robot's shadow
UNSHADOWED_QUANTILE = 0.75  # the robot-free background's per-pixel quantile: a shadow may linger in this share


def median_background(frames: Tensor, max_frames: int = 64) -> Tensor:
    """Temporal median of a static camera's frames [T, H, W, 3] (at most `max_frames`, evenly spread) -> [H, W, 3]."""
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got {tuple(frames.shape)}")
    index = torch.linspace(0, frames.shape[0] - 1, min(max_frames, frames.shape[0])).round().long()
    return frames[index].float().median(dim=0).values


def robot_free_background(frames: Tensor, robot: Tensor, fallback: Tensor, margin: int = 3,
                          quantile: float = UNSHADOWED_QUANTILE) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Per pixel, the temporal `quantile` of frames [T, H, W, 3] over the frames whose fitted robot `robot`
    [T, H, W] (rendered alpha) leaves it free, grown by `margin` pixels for fit errors; pixels the robot covers in
    every frame are filled from the nearest ones seen (`fill_from_surroundings`), or keep `fallback` [H, W, 3] when
    none is. Returns the background [H, W, 3] and where it was seen [H, W] bool.

    Above the median (0.5) because what moves there once the robot is left out is mostly its shadow, which only
    darkens: a slow robot's shadow lingers on the floor in half the frames or more, and a median that keeps it
    shows it dark where a later frame has the floor lit, which the coverage term then pulls the robot onto (look-alike
    azure, 40 frames at 320x240, the fitted track left out: foreground off the true robot in frames 0, 20 and 39
    1168, 210 and 1674 px with the median, 151, 75 and 492 with 0.75; on it 1-3% less)."""
    if frames.ndim != 4 or robot.shape != frames.shape[:3] or fallback.shape != frames.shape[1:]:
        raise ValueError(f"frames [T, H, W, 3] {tuple(frames.shape)}, robot [T, H, W] {tuple(robot.shape)} and "
                         f"fallback [H, W, 3] {tuple(fallback.shape)} do not match")  # fmt: skip
    size = 2 * margin + 1
    covered = torch.nn.functional.max_pool2d(robot[:, None].float(), size, stride=1, padding=margin)[:, 0] > 0.05
    free = frames.float().masked_fill(covered[..., None], float("nan"))
    bright = free.nanquantile(quantile, dim=0)  # [H, W, 3], NaN where never free
    seen = ~covered.all(dim=0)
    if not seen.any():
        return fallback.clone(), seen
    return fill_from_surroundings(torch.where(seen[..., None], bright, fallback), seen), seen


def fill_from_surroundings(image: Tensor, known: Tensor) -> Tensor:
    """image [H, W, C] with the pixels outside `known` [H, W] bool (some must be known) filled ring by ring, each
    with the mean of its known 3x3 neighbours."""
    x = (image * known[..., None]).permute(2, 0, 1)[None]  # [1, C, H, W]
    have = known[None, None].to(image.dtype)  # [1, 1, H, W]
    while not bool(have.all()):
        total = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
        count = torch.nn.functional.avg_pool2d(have, 3, stride=1, padding=1)
        ring = (count > 0) & (have == 0)
        x = torch.where(ring, total / count.clamp_min(1e-9), x)
        have = have + ring.to(have)
    return x[0].permute(1, 2, 0)


def masked_background(image: Tensor, mask: Tensor) -> Tensor:
    """image [H, W, 3] outside `mask` [H, W] (> 0.5: robot), the median colour of the outside within it."""
    robot = mask > 0.5
    outside = image[~robot]  # [P, 3]
    fill = outside.median(dim=0).values if len(outside) else image.new_full((3,), 0.5)
    return torch.where(robot[..., None], fill, image)


def border_background(image: Tensor, border: float = 0.04) -> Tensor:
    """A uniform background [H, W, 3]: the median colour of the outer `border` fraction of image [H, W, 3]."""
    h, w = image.shape[:2]
    bh, bw = max(1, round(border * h)), max(1, round(border * w))
    edge = torch.cat([image[:bh].reshape(-1, 3), image[-bh:].reshape(-1, 3), image[:, :bw].reshape(-1, 3),
                      image[:, -bw:].reshape(-1, 3)])  # fmt: skip
    return edge.median(dim=0).values.expand(h, w, 3).clone()


def foreground(image: Tensor, background: Tensor, threshold: float = FOREGROUND_THRESHOLD) -> Tensor:
    """Pixels [..., H, W] bool that differ from the background by more than `threshold` in some channel,
    cleaned of isolated pixels (a 3x3 majority)."""
    raw = ((image - background).abs().amax(dim=-1) > threshold).float()  # [..., H, W]
    lead, (h, w) = raw.shape[:-2], raw.shape[-2:]
    votes = torch.nn.functional.avg_pool2d(raw.reshape(-1, 1, h, w), 3, stride=1, padding=1)
    return (votes > 0.5).reshape(*lead, h, w)


def moving_foreground(image: Tensor, background: Tensor, threshold: float = FOREGROUND_THRESHOLD,
                      shadow: float = 0.3, lit: float = LINGERING_SHADOWS) -> Tensor:  # fmt: skip
    """[..., H, W] float: pixels that differ from the background even after scaling it per pixel by a factor in
    [`shadow`, `lit`] (least squares over the channels), cleaned of isolated pixels. Below 1: shadows the robot
    casts; above 1: a shadow it cast where it lingered, which the temporal median kept and this frame does not
    have (up to `lit`; on 7 look-alike frames the foreground outside the true robot was 2-61% of it with 1.0,
    0-13% with 1.5, which keeps 51-74% of the foreground pixels on the robot). A robot as grey as the background there is
    missed too: a one-sided coverage term loses some evidence by that, where spurious foreground pulls the fit
    off the robot."""
    scale = (image * background).sum(-1, keepdim=True) / background.square().sum(-1, keepdim=True).clamp_min(1e-6)
    return foreground(image, background * scale.clamp(shadow, lit), threshold).float()


def unchanged(image: Tensor, background: Tensor, threshold: float = STILL_THRESHOLD) -> Tensor:
    """[..., H, W] bool: pixels within `threshold` of the background in every channel, in a 3x3 neighbourhood
    (the background for sure: no robot, no shadow)."""
    return interior((image - background).abs().amax(dim=-1) < threshold) > 0.5


def interior(mask: Tensor) -> Tensor:
    """[..., H, W] float: the pixels of `mask` [..., H, W] (bool or [0, 1]) whose 3x3 neighbourhood is all in it
    (a one-pixel erosion; the image border does not erode)."""
    lead, (h, w) = mask.shape[:-2], mask.shape[-2:]
    eroded = -torch.nn.functional.max_pool2d(-mask.float().reshape(-1, 1, h, w), 3, stride=1, padding=1)
    return eroded.reshape(*lead, h, w)
