"""Pinhole cameras in torch: a small dataclass, look-at, intrinsics, resizing, and a differentiable refinement.

Conventions (DESIGN.md): OpenCV camera (x right, y down, z forward), `viewmat` = world->camera [4, 4], `K` in
pixels with pixel centres at +0.5, world up +z.

>>> cams = Cameras.from_intrinsics(fx=400, fy=400, cx=320, cy=240, width=640, height=480,
...                                viewmats=look_at(torch.tensor([1.5, 0.0, 0.8]), torch.tensor([0, 0, 0.4])))
>>> small = cams.resized(160, 120)                           # K scaled with the image
>>> delta = CameraDelta(batch=4, pivots=torch.zeros(4, 3))    # learnable, identity at start
>>> viewmats = delta(cams.viewmats.expand(4, 4, 4))          # [4, 4, 4], differentiable
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn


@dataclasses.dataclass
class Cameras:
    """Cameras sharing one image size; any batch shape [...] (e.g. [C] or [B, C])."""

    viewmats: Tensor  # [..., 4, 4] world->camera
    Ks: Tensor  # [..., 3, 3]
    width: int
    height: int

    def __post_init__(self):
        if self.viewmats.shape[-2:] != (4, 4) or self.Ks.shape[-2:] != (3, 3):
            raise ValueError(f"viewmats must be [..., 4, 4] and Ks [..., 3, 3], got {tuple(self.viewmats.shape)}, "
                             f"{tuple(self.Ks.shape)}")  # fmt: skip
        if self.viewmats.shape[:-2] != self.Ks.shape[:-2]:
            raise ValueError(f"viewmats {tuple(self.viewmats.shape)} and Ks {tuple(self.Ks.shape)} differ in batch shape")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_intrinsics(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                        viewmats: Tensor | None = None) -> "Cameras":  # fmt: skip
        """One camera (batch [] ) or `viewmats` [..., 4, 4] sharing these intrinsics."""
        K = intrinsics_matrix(fx, fy, cx, cy)
        viewmats = torch.eye(4) if viewmats is None else viewmats
        return cls(viewmats, K.to(viewmats).expand(*viewmats.shape[:-2], 3, 3), width, height)

    @classmethod
    def from_fov(cls, fovy_deg: float, width: int, height: int, viewmats: Tensor | None = None) -> "Cameras":
        """Square pixels, principal point at the image centre, vertical field of view `fovy_deg`."""
        f = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
        return cls.from_intrinsics(f, f, width / 2.0, height / 2.0, width, height, viewmats)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras for an image resized to width x height (K scaled per axis)."""
        return Cameras(self.viewmats, scale_intrinsics(self.Ks, width / self.width, height / self.height), width, height)

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)

    def centres(self) -> Tensor:
        """Camera centres in world coordinates [..., 3]."""
        R, t = self.viewmats[..., :3, :3], self.viewmats[..., :3, 3]
        return -(R.transpose(-1, -2) @ t[..., None])[..., 0]


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> Tensor:
    """K [3, 3] from focal lengths and principal point (pixels); errors for non-positive focal lengths."""
    if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
        raise ValueError(f"focal lengths must be positive and finite, got fx={fx}, fy={fy}")
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def scale_intrinsics(Ks: Tensor, sx: float, sy: float) -> Tensor:
    """Ks [..., 3, 3] of an image scaled by sx, sy (pixel centres at +0.5 scale with the image)."""
    scale = torch.tensor([sx, sy, 1.0], dtype=Ks.dtype, device=Ks.device)
    return Ks * scale[:, None]


def look_at(eyes: Tensor, targets: Tensor, up: Tensor | None = None, roll: Tensor | None = None) -> Tensor:
    """World->camera OpenCV viewmats [..., 4, 4] of cameras at `eyes` [..., 3] looking at `targets` [..., 3],
    image up along world `up` [3] (default +z), then rolled by `roll` [...] radians about the optical axis.
    Differentiable; errors when a viewing direction is parallel to `up`."""
    eyes, targets = torch.broadcast_tensors(torch.as_tensor(eyes, dtype=torch.float32),
                                            torch.as_tensor(targets, dtype=torch.float32))  # fmt: skip
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else torch.as_tensor(up, dtype=torch.float32)
    z = torch.nn.functional.normalize(targets - eyes, dim=-1)  # [..., 3]
    x = torch.linalg.cross(z, up.to(z).expand_as(z))
    if (x.norm(dim=-1) < 1e-6).any():
        raise ValueError("look_at: a viewing direction is parallel to the up vector")
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.linalg.cross(z, x)  # image y points down
    if roll is not None:
        c, s = torch.cos(roll)[..., None], torch.sin(roll)[..., None]
        x, y = c * x + s * y, -s * x + c * y
    R = torch.stack([x, y, z], dim=-2)  # [..., 3, 3] rows: camera axes in world
    return rigid(R, -(R @ eyes[..., None])[..., 0])


def rigid(R: Tensor, t: Tensor) -> Tensor:
    """[..., 4, 4] from rotations [..., 3, 3] and translations [..., 3]."""
    top = torch.cat([R, t[..., None]], dim=-1)  # [..., 3, 4]
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def rotation_6d_to_matrix(d6: Tensor) -> Tensor:
    """Zhou et al.'s continuous 6D rotation (first two rows) [..., 6] -> rotation matrices [..., 3, 3]."""
    a, b = d6[..., :3], d6[..., 3:]
    x = torch.nn.functional.normalize(a, dim=-1)
    y = torch.nn.functional.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1)
    return torch.stack([x, y, torch.linalg.cross(x, y)], dim=-2)


class CameraDelta(nn.Module):
    """A learnable rigid correction of B reference cameras, identity at start, conditioned for Adam.

    The correction rotates the world about a pivot (e.g. the robot's centre, so turning the camera does not also
    swing the robot across the image), then moves the pivot: `shift` = (dx, dy, log depth scale), dx, dy in
    normalised image coordinates (pixels / focal length). With p the pivot in camera coordinates,
    p' = ((p_x / p_z + dx) z', (p_y / p_z + dy) z', z') with z' = p_z exp(dz), and x_cam' = R_d (x_cam - p) + p'.
    A step of 0.01 then moves the robot ~1% of the focal length across the image or 1% in depth, at any distance.
    """

    def __init__(self, batch: int, pivots: Tensor | None = None):
        super().__init__()
        self.rotation = nn.Parameter(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(batch, 1))  # [B, 6]
        self.shift = nn.Parameter(torch.zeros(batch, 3))  # [B, 3] (dx, dy, log depth scale)
        self.register_buffer("pivots", torch.zeros(batch, 3) if pivots is None else pivots.reshape(batch, 3).float())

    def forward(self, viewmats: Tensor) -> Tensor:
        """Corrected viewmats: reference `viewmats` [B, ..., 4, 4] (the same correction for all cameras of a
        hypothesis, e.g. a rig) -> [B, ..., 4, 4]."""
        extra = viewmats.ndim - 3
        R_ref, t_ref = viewmats[..., :3, :3], viewmats[..., :3, 3]
        pivot = (R_ref @ self._expand(self.pivots, extra)[..., None])[..., 0] + t_ref  # [B, ..., 3] camera frame
        shift = self._expand(self.shift, extra)
        depth = pivot[..., 2:3] * shift[..., 2:3].exp()
        moved = torch.cat([(pivot[..., :2] / pivot[..., 2:3] + shift[..., :2]) * depth, depth], dim=-1)
        R_d = self._expand(rotation_6d_to_matrix(self.rotation), extra)  # [B, ..., 3, 3]
        return rigid(R_d @ R_ref, (R_d @ (t_ref - pivot)[..., None])[..., 0] + moved)

    @staticmethod
    def _expand(x: Tensor, extra: int) -> Tensor:
        """[B, ...] -> [B, 1 x extra, ...] so a per-hypothesis value broadcasts over its cameras."""
        return x.reshape(x.shape[0], *([1] * extra), *x.shape[1:])
