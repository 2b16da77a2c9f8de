"""`rasterize`: one functional entry point (gsplat.rasterization-like) with two backends."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from . import gsplat_backend
from .composite import composite
from .extension import fused_kernels, load_extension
from .projection import project_gaussians, quat_scale_to_covar, camera_centres
from .sh import MAX_SH_DEGREE, spherical_harmonics
from .tiles import isect_tiles

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
RASTERIZE_MODES = ("classic", "antialiased")
BACKENDS = ("auto", "torch", "gsplat")
RIGID_TOL = 1e-3  # max deviation of R^T R from I and of the last row from [0, 0, 0, 1]


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, need not be normalised
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N] in [0, 1]
    colors: Tensor,  # [N, D] / [C, N, D], or SH coefficients [N, K, 3] / [C, N, K, 3] with sh_degree
    viewmats: Tensor,  # [C, 4, 4] world->camera
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    render_mode: str = "RGB",
    backend: str = "auto",
    radius_clip: float = 0.0,
    rasterize_mode: str = "classic",
    tile_size: int = 16,
    validate: bool = True,
) -> Tuple[Tensor, Tensor, Dict]:
    """Render N 3D Gaussians into C pinhole cameras, differentiably.

    Arguments and conventions mirror `gsplat.rasterization` (v1.5.3, `packed=False`): OpenCV cameras,
    pixel centres at +0.5, 2D covariances dilated by `eps2d`, alpha = min(0.999, o * exp(-sigma)),
    contributions < 1/255 skipped, front-to-back compositing stopping before transmittance <= 1e-4,
    backgrounds blended by (1 - alpha). With `sh_degree`, colours are SH (degree <= 3) evaluated in the
    direction camera centre -> mean, plus 0.5, clamped at 0.

    render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth), "RGB+D" or "RGB+ED"; depth
        is the last channel. rasterize_mode "antialiased" scales opacities by gsplat's compensation.
    backend: "torch" (tile-based; on CPU the compositing uses a compiled C++ kernel when available),
        "gsplat" (CUDA only) or "auto" (gsplat for CUDA tensors when it works, else torch).
    validate: check shapes, finiteness and viewmats (costs a device sync; turn off in hot loops).

    Returns:
        colors [C, H, W, D(+1)], alphas [C, H, W, 1] and a meta dict with at least `means2d`
        [C, N, 2] (grad retained, for densification), `radii` [C, N, 2] (int32, 0 = culled),
        `depths` [C, N], `conics` [C, N, 3], `opacities` [C, N], `width`, `height`, `tile_size`,
        `n_cameras` and `backend`.
    """
    if validate:
        validate_inputs(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane, eps2d,
            sh_degree, backgrounds, render_mode, backend, rasterize_mode, tile_size,
        )
    chosen = _choose_backend(backend, means)
    kwargs = dict(
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, backgrounds=backgrounds,
        render_mode=render_mode, radius_clip=radius_clip, rasterize_mode=rasterize_mode, tile_size=tile_size,
    )
    args = (means, quats, scales, opacities, colors, viewmats, Ks, width, height)
    if chosen == "gsplat":
        render, alphas, meta = gsplat_backend.rasterize_gsplat(*args, **kwargs)
    else:
        render, alphas, meta = _rasterize_torch(*args, **kwargs)
    if meta["means2d"].requires_grad:
        meta["means2d"].retain_grad()
    meta["backend"] = chosen
    return render, alphas, meta


def _choose_backend(backend: str, means: Tensor) -> str:
    if backend == "torch":
        return "torch"
    on_cuda = means.device.type == "cuda"
    if backend == "gsplat":
        if not on_cuda:
            raise ValueError(f"backend='gsplat' needs CUDA tensors, but means is on {means.device}")
        reason = gsplat_backend.unavailable_reason()
        if reason:
            raise RuntimeError(f"backend='gsplat' is unavailable: {reason}")
        return "gsplat"
    return "gsplat" if on_cuda and gsplat_backend.unavailable_reason() is None else "torch"


def sh_colors(means: Tensor, coeffs: Tensor, viewmats: Tensor, sh_degree: int, impl: str = "auto") -> Tensor:
    """RGB of SH coefficients as `rasterize` evaluates them: in the direction camera centre -> mean, plus 0.5,
    clamped at 0. means [N, 3], coeffs [N, K, 3] or [C, N, K, 3], viewmats [C, 4, 4] -> [C, N, 3].

    impl: "torch" (`spherical_harmonics`), "cpp" (one fused C++ loop forward and backward, `csrc/sh_cpu.cpp`: CPU
    tensors) or "auto" (cpp where it applies and the extension is available); the tests compare the two."""
    dirs = means[None] - camera_centres(viewmats)[:, None]  # [C, N, 3]
    applies = (dirs.device.type == "cpu" and coeffs.device.type == "cpu" and 0 <= sh_degree <= MAX_SH_DEGREE
               and dirs.dtype in (torch.float32, torch.float64))  # fmt: skip
    if fused_kernels(impl, applies, "float32 or float64 CPU tensors and an SH degree of 0 to 3") is not None:
        shs = coeffs if coeffs.dim() == 4 else coeffs[None]  # [C or 1, N, K, 3]
        return _ShCpp.apply(dirs.contiguous(), shs.to(dirs.dtype).contiguous(), sh_degree)
    shs = coeffs if coeffs.dim() == 4 else coeffs[None].expand((viewmats.shape[0],) + coeffs.shape)  # [C, N, K, 3]
    return torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)


class _ShCpp(torch.autograd.Function):
    """The fused C++ SH colours of directions [C, N, 3] and coefficients [C or 1, N, K, 3]."""

    @staticmethod
    def forward(ctx, dirs, coeffs, degree):
        ctx.degree = degree
        ctx.save_for_backward(dirs, coeffs)
        return load_extension().sh_forward(dirs, coeffs, degree)

    @staticmethod
    def backward(ctx, v_colors):
        dirs, coeffs = ctx.saved_tensors
        v_dirs, v_coeffs = load_extension().sh_backward(dirs, coeffs, ctx.degree, v_colors.contiguous(),
                                                        ctx.needs_input_grad[1])  # fmt: skip
        return v_dirs, v_coeffs, None  # v_coeffs: None unless the coefficients need it


def _rasterize_torch(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, near_plane, far_plane, eps2d,
    sh_degree, backgrounds, render_mode, radius_clip, rasterize_mode, tile_size,
):
    C, N = viewmats.shape[0], means.shape[0]
    proj = project_gaussians(
        means, quat_scale_to_covar(quats, scales), viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, opacities=opacities,
        calc_compensations=rasterize_mode == "antialiased",
    )
    opac = opacities[None].expand(C, N)  # [C, N]
    if proj.compensations is not None:
        opac = opac * proj.compensations
    if sh_degree is None:
        feats = colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])  # [C, N, D]
    else:
        feats = sh_colors(means, colors, viewmats, sh_degree)  # [C, N, 3]
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, proj.depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = proj.depths[..., None]
        backgrounds = None if backgrounds is None else backgrounds.new_zeros(C, 1)

    bins = isect_tiles(proj.means2d, proj.radii, proj.depths, width, height, tile_size)
    D = feats.shape[-1]
    render, alphas = composite(
        proj.means2d.reshape(C * N, 2), proj.conics.reshape(C * N, 3), feats.reshape(C * N, D),
        opac.reshape(C * N), bins,
    )
    if backgrounds is not None:
        render = render + (1 - alphas) * backgrounds[:, None, None, :]
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    meta = {
        "radii": proj.radii, "means2d": proj.means2d, "depths": proj.depths, "conics": proj.conics,
        "opacities": opac, "tiles_per_gauss": bins.tiles_per_gauss, "isect_offsets": bins.offsets,
        "flatten_ids": bins.flatten_ids, "width": width, "height": height, "tile_size": tile_size,
        "tile_width": bins.tile_width, "tile_height": bins.tile_height, "n_cameras": C,
    }
    return render, alphas, meta


# ------------------------------------------------------------------------------------ validation
def _shape_error(name: str, expected: str, t: Tensor) -> ValueError:
    return ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def validate_inputs(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane, eps2d,
    sh_degree, backgrounds, render_mode, backend, rasterize_mode, tile_size,
) -> None:
    """Raise TypeError / ValueError naming the offending argument (see `rasterize`)."""
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
               "viewmats": viewmats, "Ks": Ks}
    if backgrounds is not None:
        tensors["backgrounds"] = backgrounds
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.dtype != means.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but means has {means.dtype}; use one dtype")
        if t.device != means.device:
            raise ValueError(f"{name} is on {t.device} but means is on {means.device}")
    for name, v in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    for name, v, allowed in (("render_mode", render_mode, RENDER_MODES), ("backend", backend, BACKENDS),
                             ("rasterize_mode", rasterize_mode, RASTERIZE_MODES)):
        if v not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {v!r}")
    if not (near_plane > 0 and far_plane > near_plane):
        raise ValueError(f"need 0 < near_plane < far_plane, got near_plane={near_plane}, far_plane={far_plane}")
    if not (eps2d >= 0 and math.isfinite(eps2d)):
        raise ValueError(f"eps2d must be finite and >= 0, got {eps2d}")

    if means.dim() != 2 or means.shape[1] != 3:
        raise _shape_error("means", "[N, 3]", means)
    N = means.shape[0]
    for name, t, tail in (("quats", quats, (4,)), ("scales", scales, (3,)), ("opacities", opacities, ())):
        if tuple(t.shape) != (N,) + tail:
            raise _shape_error(name, "[N" + "".join(f", {d}" for d in tail) + f"] with N={N}", t)
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4) or viewmats.shape[0] == 0:
        raise _shape_error("viewmats", "[C, 4, 4] with C >= 1", viewmats)
    C = viewmats.shape[0]
    if tuple(Ks.shape) != (C, 3, 3):
        raise _shape_error("Ks", f"[C, 3, 3] with C={C}", Ks)
    if sh_degree is None:
        if not ((colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N))):
            raise _shape_error("colors", f"[N, D] or [C, N, D] with N={N}, C={C} (sh_degree is None)", colors)
        D = colors.shape[-1]
    else:
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be None or an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (colors.dim() == 4 and colors.shape[:2] == (C, N))
        if not ok or colors.shape[-1] != 3:
            raise _shape_error("colors", f"[N, K, 3] or [C, N, K, 3] with N={N}, C={C} (SH coefficients)", colors)
        if colors.shape[-2] < (sh_degree + 1) ** 2:
            raise ValueError(f"colors has K={colors.shape[-2]} SH coefficients, sh_degree={sh_degree} needs "
                             f"at least {(sh_degree + 1) ** 2}")
        D = 3
    if D == 0:
        raise _shape_error("colors", "with at least one channel", colors)
    if backgrounds is not None and tuple(backgrounds.shape) != (C, D):
        raise _shape_error("backgrounds", f"[C, D] = [{C}, {D}]", backgrounds)

    for name, t in tensors.items():
        if t.numel() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf values")
    if N and bool((quats.norm(dim=-1) == 0).any()):
        raise ValueError("quats contains zero-norm quaternions")
    if bool(((Ks[:, 0, 0] <= 0) | (Ks[:, 1, 1] <= 0)).any()):
        raise ValueError("Ks must have positive focal lengths fx = Ks[:, 0, 0] and fy = Ks[:, 1, 1]")
    _validate_viewmats(viewmats.detach())


def _validate_viewmats(viewmats: Tensor) -> None:
    vm = viewmats.double()
    det = torch.linalg.det(vm)
    R = vm[:, :3, :3]
    eye = torch.eye(3, dtype=vm.dtype, device=vm.device)
    ortho_err = (R.transpose(1, 2) @ R - eye).abs().amax(dim=(1, 2))
    row_err = (vm[:, 3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=vm.dtype, device=vm.device)).abs().amax(1)
    singular = det.abs() < 1e-12
    if bool(singular.any()):
        i = int(singular.nonzero()[0, 0])
        raise ValueError(f"viewmats[{i}] is not invertible (det = {float(det[i]):.3g})")
    bad = (ortho_err > RIGID_TOL) | (row_err > RIGID_TOL) | (det < 0)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"viewmats[{i}] is not a rigid world->camera transform: need an orthonormal rotation (det +1) "
            f"and last row [0, 0, 0, 1] (|R^T R - I| = {float(ortho_err[i]):.2g}, "
            f"last row error = {float(row_err[i]):.2g}, det = {float(det[i]):.3g})"
        )
