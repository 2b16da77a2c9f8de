"""The gsplat (CUDA) backend: a thin call to `gsplat.rasterization` with `packed=False`."""

from __future__ import annotations

import functools
from typing import Optional


@functools.lru_cache(maxsize=None)
def unavailable_reason() -> Optional[str]:
    """None when gsplat's CUDA rasterizer can run here, else why not (checked once; the first call
    may JIT-compile gsplat's CUDA extension)."""
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda._backend import _C
    except Exception as err:  # noqa: BLE001 - any import/build failure means "not available"
        return f"gsplat cannot be imported ({type(err).__name__}: {err})"
    if _C is None:
        return "gsplat's CUDA extension is not built and could not be compiled"
    return None


def rasterize_gsplat(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, near_plane, far_plane, eps2d,
    sh_degree, backgrounds, render_mode, radius_clip, rasterize_mode, tile_size,
):
    """`gsplat.rasterization` with the arguments of `drrobot.render.rasterize` (shapes as there)."""
    from gsplat import rasterization

    return rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d, sh_degree=sh_degree, packed=False,
        tile_size=tile_size, backgrounds=backgrounds, render_mode=render_mode, rasterize_mode=rasterize_mode,
    )
