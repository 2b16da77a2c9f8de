"""Geometry stage: 3D Gaussians -> per-camera 2D Gaussians (EWA splatting).

Follows gsplat 1.5.3 (`ProjectionEWA3DGSFused.cu`, pinhole camera) exactly: world->camera transform,
perspective Jacobian with the 0.3*tan(fov) frustum clamp, 2D covariance dilated by `eps2d`, conic =
inverse 2D covariance, per-axis radii `ceil(extend * sqrt(cov2d_ii))` with the opacity-aware
`extend = min(3.33, sqrt(2 log(255 * opacity)))`, and culling (radii = 0) outside [near, far], for a
non-positive determinant, for opacity < 1/255 and for boxes entirely outside the image.

Two implementations of `project_gaussians`:
- ``"torch"``: torch autograd over [C, N] tensors, any device, every input differentiable (also Ks);
- ``"cpp"``: one fused C++/OpenMP loop per (camera, Gaussian) forward and backward (``csrc/project_cpu.cpp``,
  built with the compositing kernel, see `extension.py`); CPU, gradients for means, covars and viewmats. The
  torch version is its twin: the tests compare values and gradients. "auto" picks it where it applies.
`quat_scale_to_covar` has the same two implementations (``csrc/covar_cpu.cpp``: one loop per Gaussian).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .extension import fused_kernels, load_extension

ALPHA_THRESHOLD = 1.0 / 255.0  # contributions below this are skipped (gsplat's ALPHA_THRESHOLD)
MAX_EXTEND = 3.33  # bounding-box half-size in standard deviations when opacity is unknown


@dataclass
class Projection:
    """Per-camera 2D Gaussians; entries with `radii == 0` are culled."""

    means2d: Tensor  # [C, N, 2] pixel coordinates (pixel centres at +0.5)
    conics: Tensor  # [C, N, 3] upper triangle (a, b, c) of the inverse 2D covariance
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 bounding-box half-sizes in pixels (x, y); 0 = culled
    compensations: Optional[Tensor]  # [C, N] sqrt(det(cov2d) / det(cov2d + eps2d I)) or None


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from (w, x, y, z) quaternions, normalised here.

    quats: [..., 4]. Returns [..., 3, 3].
    """
    w, x, y, z = torch.unbind(quats / quats.norm(dim=-1, keepdim=True), dim=-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor, impl: str = "auto") -> Tensor:
    """3D covariances R S S^T R^T.

    quats: [..., 4] (wxyz, any norm), scales: [..., 3] (linear), the same batch shape. Returns [..., 3, 3].
    impl: "torch", "cpp" (one fused C++ loop forward and backward, CPU tensors) or "auto" (cpp where available).
    """
    applies = quats.device.type == "cpu" and quats.shape[:-1] == scales.shape[:-1]
    if fused_kernels(impl, applies, "CPU tensors of one batch shape") is not None:
        batch = quats.shape[:-1]
        dtype = torch.promote_types(quats.dtype, scales.dtype)
        covars = _CovarCpp.apply(quats.reshape(-1, 4).to(dtype), scales.reshape(-1, 3).to(dtype))
        return covars.reshape(batch + (3, 3))
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


class _CovarCpp(torch.autograd.Function):
    """The fused C++ covariances; the backward recomputes the rotation matrices."""

    @staticmethod
    def forward(ctx, quats, scales):  # [N, 4], [N, 3]
        quats, scales = quats.contiguous(), scales.contiguous()
        ctx.save_for_backward(quats, scales)
        return load_extension().covar_forward(quats, scales)  # [N, 3, 3]

    @staticmethod
    def backward(ctx, v_covars):
        quats, scales = ctx.saved_tensors
        v_quats, v_scales = load_extension().covar_backward(quats, scales, v_covars.contiguous())
        return v_quats, v_scales


def project_gaussians(
    means: Tensor,  # [N, 3]
    covars: Tensor,  # [N, 3, 3]
    viewmats: Tensor,  # [C, 4, 4] world->camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    opacities: Optional[Tensor] = None,  # [N]; enables gsplat's opacity-aware (tighter) radii
    calc_compensations: bool = False,
    impl: str = "auto",
) -> Projection:
    """EWA projection of 3D Gaussians into C pinhole cameras, differentiable w.r.t. means,
    covars and viewmats (radii are integers and carry no gradient).

    impl: "torch", "cpp" (CPU tensors, Ks without gradient) or "auto" (cpp where it is available and applies).
    """
    applies = means.device.type == "cpu" and not Ks.requires_grad
    if fused_kernels(impl, applies, "CPU tensors and Ks without gradient") is not None:
        settings = (width, height, float(eps2d), float(near_plane), float(far_plane), float(radius_clip),
                    bool(calc_compensations))  # fmt: skip
        dtype = means.dtype
        empty = means.new_zeros(0)
        opac = empty if opacities is None else opacities.detach().to(dtype).contiguous()
        means2d, conics, depths, radii, comp = _ProjectCpp.apply(
            means, covars.to(dtype), viewmats.to(dtype), Ks.detach().to(dtype), opac, settings
        )
        return Projection(means2d, conics, depths, radii, comp if calc_compensations else None)
    return _project_torch(means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane, radius_clip,
                          opacities, calc_compensations)  # fmt: skip


class _ProjectCpp(torch.autograd.Function):
    """The fused C++ projection; its backward recomputes the per-Gaussian intermediates."""

    @staticmethod
    def forward(ctx, means, covars, viewmats, Ks, opacities, settings):
        means, covars, viewmats, Ks = (t.contiguous() for t in (means, covars, viewmats, Ks))
        means2d, conics, depths, radii, comp = load_extension().project_forward(
            means, covars, viewmats, Ks, opacities, *settings
        )
        ctx.settings = settings
        ctx.save_for_backward(means, covars, viewmats, Ks)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii, comp

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_comp):
        means, covars, viewmats, Ks = ctx.saved_tensors
        width, height, eps2d, near_plane, far_plane, _radius_clip, calc_compensations = ctx.settings
        C, N = viewmats.shape[0], means.shape[0]

        def grad(g, shape):  # an output autograd left without gradient: zeros
            return means.new_zeros(shape) if g is None else g.contiguous()

        v_comp = grad(v_comp, (C, N)) if calc_compensations else means.new_zeros(0)
        v_means, v_covars, v_viewmats = load_extension().project_backward(
            means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane, calc_compensations,
            grad(v_means2d, (C, N, 2)), grad(v_conics, (C, N, 3)), grad(v_depths, (C, N)), v_comp,
        )
        return v_means, v_covars, v_viewmats, None, None, None


def _project_torch(means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane, radius_clip,
                   opacities, calc_compensations) -> Projection:
    """The torch twin of the fused kernel (module docstring)."""
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C, N, 3]
    # camera-space covariance R S R^T, written as contractions that batch over all Gaussians at once
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # [C, N, 3, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]

    in_depth = (z >= near_plane) & (z <= far_plane)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled entries finite (and their grads 0)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    rz = 1.0 / z
    tx = z * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    # cov2d = J covars_c J^T with the perspective Jacobian J = [[ja, 0, jb], [0, jc, jd]]
    ja, jb, jc, jd = fx * rz, -fx * tx * rz * rz, fy * rz, -fy * ty * rz * rz
    S = covars_c
    c00 = ja * ja * S[..., 0, 0] + 2 * ja * jb * S[..., 0, 2] + jb * jb * S[..., 2, 2]
    c01 = ja * jc * S[..., 0, 1] + ja * jd * S[..., 0, 2] + jb * jc * S[..., 1, 2] + jb * jd * S[..., 2, 2]
    c11 = jc * jc * S[..., 1, 1] + 2 * jc * jd * S[..., 1, 2] + jd * jd * S[..., 2, 2]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]

    det_orig = c00 * c11 - c01 * c01
    c00, c11 = c00 + eps2d, c11 + eps2d
    det = c00 * c11 - c01 * c01
    valid = in_depth & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], dim=-1)  # [C, N, 3]
    compensations = None
    if calc_compensations:
        compensations = _BlurCompensation.apply(det_orig / det)

    with torch.no_grad():
        extend = torch.full_like(z, MAX_EXTEND)
        if opacities is not None:
            opac = opacities[None].expand_as(z)
            if compensations is not None:
                opac = opac * compensations
            valid = valid & (opac >= ALPHA_THRESHOLD)
            extend = torch.sqrt(2.0 * torch.log(opac.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
            extend = extend.clamp(max=MAX_EXTEND)
        radius = torch.ceil(extend[..., None] * torch.stack([c00, c11], -1).clamp(min=0).sqrt())
        valid = valid & (radius > radius_clip).any(-1)
        mx, my = means2d[..., 0], means2d[..., 1]
        valid = valid & (mx + radius[..., 0] > 0) & (mx - radius[..., 0] < width)
        valid = valid & (my + radius[..., 1] > 0) & (my - radius[..., 1] < height)
        radii = torch.where(valid[..., None], radius, torch.zeros_like(radius)).to(torch.int32)
    return Projection(means2d, conics, means_c[..., 2], radii, compensations)


class _BlurCompensation(torch.autograd.Function):
    """sqrt(max(ratio, 0)) with gsplat's CUDA gradient 0.5 / (sqrt + 1e-6): plain autograd gives infinite
    gradients as a Gaussian's projection flattens (ratio -> 0), which made antialiased training diverge."""

    @staticmethod
    def forward(ctx, ratio: Tensor) -> Tensor:  # [C, N] det(cov2d) / det(cov2d + eps2d I)
        compensation = torch.sqrt(torch.clamp(ratio, min=0.0))
        ctx.save_for_backward(ratio, compensation)
        return compensation

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        ratio, compensation = ctx.saved_tensors
        return torch.where(ratio > 0, grad * 0.5 / (compensation + 1e-6), torch.zeros_like(grad))


def camera_centres(viewmats: Tensor) -> Tensor:
    """World-space camera centres. viewmats: [C, 4, 4] world->camera. Returns [C, 3]."""
    return torch.linalg.inv(viewmats)[:, :3, 3]


__all__ = ["Projection", "quat_to_rotmat", "quat_scale_to_covar", "project_gaussians", "camera_centres", "ALPHA_THRESHOLD"]
