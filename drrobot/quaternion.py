"""Quaternion helpers, (w, x, y, z) order as in gsplat and the 3DGS `.ply` layout."""

from __future__ import annotations

import torch
from torch import Tensor


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b (rotation b first, then a). a, b: [..., 4] broadcastable. Returns [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions with w >= 0 from rotation matrices. R: [..., 3, 3]. Returns [..., 4].

    Picks, per matrix, the best-conditioned of the four standard formulas (largest of 4w^2, 4x^2, 4y^2, 4z^2),
    so it is accurate and differentiable for every rotation, including 180 degree ones.
    """
    m = R.flatten(-2)  # [..., 9]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    candidates = torch.stack(  # [..., 4 formulas, 4 components], each scaled by 4 * (its pivot component)
        [
            torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, 1 + m00 - m11 - m22, m10 + m01, m02 + m20], -1),
            torch.stack([m02 - m20, m10 + m01, 1 - m00 + m11 - m22, m21 + m12], -1),
            torch.stack([m10 - m01, m02 + m20, m21 + m12, 1 - m00 - m11 + m22], -1),
        ],
        dim=-2,
    )
    pivots = torch.stack([candidates[..., i, i] for i in range(4)], -1)  # [..., 4]
    best = pivots.argmax(-1, keepdim=True)  # [..., 1]
    q = torch.take_along_dim(candidates, best[..., None], dim=-2).squeeze(-2)  # [..., 4]
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)
