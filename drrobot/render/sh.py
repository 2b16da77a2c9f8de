"""Real spherical harmonics up to degree 3, with gsplat's basis order, constants and signs."""

from __future__ import annotations

import torch
from torch import Tensor

MAX_SH_DEGREE = 3


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values at unit directions (Sloan's fast evaluation, as gsplat).

    dirs: [..., 3] unit vectors. Returns [..., (degree + 1) ** 2].
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.2820947917738781)]
    if degree >= 1:
        a = -0.48860251190292
        out += [a * y, -a * z, a * x]
    if degree >= 2:
        z2 = z * z
        b = -1.092548430592079 * z
        c1, s1 = x * x - y * y, 2 * x * y
        out += [
            0.5462742152960395 * s1, b * y, 0.9461746957575601 * z2 - 0.3153915652525201,
            b * x, 0.5462742152960395 * c1,
        ]
    if degree >= 3:
        tc = -2.285228997322329 * z2 + 0.4570457994644658
        tb = 1.445305721320277 * z
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        out += [
            -0.5900435899266435 * s2, tb * s1, tc * y, z * (1.865881662950577 * z2 - 1.119528997770346),
            tc * x, tb * c1, -0.5900435899266435 * c2,
        ]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours; only the first (degree + 1) ** 2 coefficients are used.

    dirs: [..., 3] view directions (any length, normalised here); coeffs: [..., K, 3].
    Returns [..., 3] (raw SH value, without gsplat's +0.5 offset).
    """
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    n = (degree + 1) ** 2
    return (sh_bases(degree, dirs)[..., None] * coeffs[..., :n, :]).sum(dim=-2)
