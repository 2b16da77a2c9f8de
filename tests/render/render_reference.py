"""Brute-force reference rasterizer for the tests: every Gaussian at every pixel, float64, plain autograd.

Written independently of drrobot.render (own quaternion, Jacobian, SH and compositing code) from
gsplat's documented per-pixel semantics. Only for tiny scenes (a Python loop over Gaussians).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

_SH_C0 = 0.28209479177387814
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
          1.445305721320277, -0.5900435899266435)


def rotation(q: Tensor) -> Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3] via R = (w^2 - v.v) I + 2 v v^T + 2 w [v]_x."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, v = q[:, 0], q[:, 1:]
    vx = torch.zeros(q.shape[0], 3, 3, dtype=q.dtype)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    eye = torch.eye(3, dtype=q.dtype)
    return (w * w - (v * v).sum(-1))[:, None, None] * eye + 2 * v[:, :, None] * v[:, None, :] + 2 * w[:, None, None] * vx


def sh_colors(deg: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """3DGS-style real SH (same functions as gsplat on the unit sphere). dirs [..., 3], coeffs [..., K, 3]."""
    d = dirs / dirs.norm(dim=-1, keepdim=True)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
    r = _SH_C0 * coeffs[..., 0, :]
    if deg >= 1:
        r = r - _SH_C1 * y * coeffs[..., 1, :] + _SH_C1 * z * coeffs[..., 2, :] - _SH_C1 * x * coeffs[..., 3, :]
    if deg >= 2:
        xx, yy, zz = x * x, y * y, z * z
        r = (r + _SH_C2[0] * x * y * coeffs[..., 4, :] + _SH_C2[1] * y * z * coeffs[..., 5, :]
             + _SH_C2[2] * (2 * zz - xx - yy) * coeffs[..., 6, :] + _SH_C2[3] * x * z * coeffs[..., 7, :]
             + _SH_C2[4] * (xx - yy) * coeffs[..., 8, :])
    if deg >= 3:
        r = (r + _SH_C3[0] * y * (3 * xx - yy) * coeffs[..., 9, :] + _SH_C3[1] * x * y * z * coeffs[..., 10, :]
             + _SH_C3[2] * y * (4 * zz - xx - yy) * coeffs[..., 11, :]
             + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[..., 12, :]
             + _SH_C3[4] * x * (4 * zz - xx - yy) * coeffs[..., 13, :] + _SH_C3[5] * z * (xx - yy) * coeffs[..., 14, :]
             + _SH_C3[6] * x * (xx - 3 * yy) * coeffs[..., 15, :])
    return r


def reference_rasterize(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=0.01, far_plane=1e10,
    eps2d=0.3, sh_degree: Optional[int] = None, backgrounds=None, render_mode="RGB", antialiased=False,
):
    """Same signature subset and outputs (colors [C, H, W, D], alphas [C, H, W, 1]) as rasterize."""
    C, N = viewmats.shape[0], means.shape[0]
    Rg = rotation(quats) * scales[:, None, :]
    cov3 = Rg @ Rg.transpose(1, 2)  # [N, 3, 3]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype) + 0.5,
                            torch.arange(width, dtype=means.dtype) + 0.5, indexing="ij")
    out_c, out_a = [], []
    for ci in range(C):
        Rc, tc = viewmats[ci, :3, :3], viewmats[ci, :3, 3]
        pc = means @ Rc.T + tc  # [N, 3]
        covc = Rc @ cov3 @ Rc.T
        fx, fy, cx, cy = Ks[ci, 0, 0], Ks[ci, 1, 1], Ks[ci, 0, 2], Ks[ci, 1, 2]
        if sh_degree is None:
            feat = colors[ci] if colors.dim() == 3 else colors
        else:
            campos = torch.linalg.inv(viewmats[ci])[:3, 3]  # as gsplat (viewmat grads off the rigid manifold)
            shs = colors[ci] if colors.dim() == 4 else colors
            feat = torch.clamp(sh_colors(sh_degree, means - campos, shs) + 0.5, min=0.0)
        if render_mode in ("RGB+D", "RGB+ED"):
            feat = torch.cat([feat, pc[:, 2:3]], dim=1)
        elif render_mode in ("D", "ED"):
            feat = pc[:, 2:3]
        D = feat.shape[1]
        acc = torch.zeros(height, width, D, dtype=means.dtype)
        T = torch.ones(height, width, dtype=means.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        order = sorted(range(N), key=lambda i: (float(pc[i, 2].detach()), i))
        for i in order:
            x, y, z = pc[i]
            if not (near_plane <= float(z.detach()) <= far_plane):
                continue
            limx = (0.3 * 0.5 * width / fx + (width - cx) / fx, 0.3 * 0.5 * width / fx + cx / fx)
            limy = (0.3 * 0.5 * height / fy + (height - cy) / fy, 0.3 * 0.5 * height / fy + cy / fy)
            u = z * torch.clamp(x / z, -limx[1], limx[0])
            v = z * torch.clamp(y / z, -limy[1], limy[0])
            J = torch.stack([torch.stack([fx / z, 0 * z, -fx * u / z**2]), torch.stack([0 * z, fy / z, -fy * v / z**2])])
            cov2 = J @ covc[i] @ J.T
            det0 = torch.linalg.det(cov2)
            cov2 = cov2 + eps2d * torch.eye(2, dtype=means.dtype)
            conic = torch.linalg.inv(cov2)
            op = opacities[i]
            if antialiased:
                op = op * torch.sqrt(torch.clamp(det0 / torch.linalg.det(cov2), min=0.0))
            m = torch.stack([fx * x / z + cx, fy * y / z + cy])
            d = torch.stack([m[0] - xs, m[1] - ys], dim=-1)  # [H, W, 2]
            sigma = 0.5 * torch.einsum("hwi,ij,hwj->hw", d, conic, d)
            alpha = torch.clamp(op * torch.exp(-sigma), max=0.999)
            use = ~done & (sigma >= 0) & (alpha >= 1.0 / 255.0)
            next_T = T * (1 - alpha)
            stop = use & (next_T <= 1e-4)
            done = done | stop
            use = use & ~stop
            acc = acc + torch.where(use, alpha * T, 0.0)[..., None] * feat[i]
            T = torch.where(use, next_T, T)
        alpha_img = (1 - T)[..., None]
        if backgrounds is not None:
            bg = backgrounds[ci]
            if render_mode in ("RGB+D", "RGB+ED"):
                bg = torch.cat([bg, bg.new_zeros(1)])
            elif render_mode in ("D", "ED"):
                bg = bg.new_zeros(1)
            acc = acc + (1 - alpha_img) * bg
        if render_mode in ("ED", "RGB+ED"):
            acc = torch.cat([acc[..., :-1], acc[..., -1:] / alpha_img.clamp(min=1e-10)], dim=-1)
        out_c.append(acc)
        out_a.append(alpha_img)
    return torch.stack(out_c), torch.stack(out_a)


def look_at(eye, target, up=(0.0, -1.0, 0.0), dtype=torch.float64) -> Tensor:
    """World->camera 4x4 (OpenCV axes: x right, y down, z forward) looking from eye at target."""
    eye, target, up = (torch.tensor(v, dtype=dtype) for v in (eye, target, up))
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])
    M = torch.eye(4, dtype=dtype)
    M[:3, :3], M[:3, 3] = R, -R @ eye
    return M


def intrinsics(width: int, height: int, fov_deg: float = 60.0, dtype=torch.float64) -> Tensor:
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)
