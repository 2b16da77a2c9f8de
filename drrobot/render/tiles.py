"""Binning of projected Gaussians into screen tiles, depth-sorted per tile (as gsplat's isect_tiles)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .extension import fused_kernels


@dataclass
class TileBins:
    """Gaussian lists per (image, tile): `flatten_ids[offsets[t]:offsets[t + 1]]`, front to back."""

    offsets: Tensor  # [I * tile_height * tile_width + 1] int64
    flatten_ids: Tensor  # [n_isects] int64 indices into the flattened [I * N] Gaussians
    tiles_per_gauss: Tensor  # [I, N] int64
    n_images: int
    tile_size: int
    tile_width: int
    tile_height: int
    width: int
    height: int

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.tile_width * self.tile_height


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [I, N, 2]
    radii: Tensor,  # [I, N, 2] int, 0 = culled
    depths: Tensor,  # [I, N]
    width: int,
    height: int,
    tile_size: int = 16,
    impl: str = "auto",
) -> TileBins:
    """Intersect each Gaussian's bounding box with the tile grid and sort every tile's list by depth
    (ties broken by Gaussian index, as gsplat's stable radix sort does).

    impl: "torch" (sorting all intersections, any device), "cpp" (`csrc/tiles_cpu.cpp`: each image's Gaussians
    sorted once and dealt into their tiles; CPU; the same result) or "auto" (cpp where available)."""
    I, N = depths.shape
    tw, th = -(-width // tile_size), -(-height // tile_size)
    kernels = fused_kernels(impl, means2d.device.type == "cpu", "CPU tensors")
    if kernels is not None:
        offsets, flatten_ids, tiles_per_gauss = kernels.isect_tiles(
            means2d.detach().contiguous(), radii.to(torch.int32).contiguous(),
            depths.detach().to(means2d.dtype).contiguous(), width, height, tile_size,
        )  # fmt: skip
        return TileBins(offsets, flatten_ids, tiles_per_gauss, I, tile_size, tw, th, width, height)
    device = means2d.device
    tile_xy = means2d.detach() / tile_size  # [I, N, 2]
    tile_r = radii.to(means2d.dtype) / tile_size
    lo = torch.floor(tile_xy - tile_r)
    hi = torch.ceil(tile_xy + tile_r)
    limit = torch.tensor([tw, th], device=device, dtype=lo.dtype)
    lo = torch.minimum(lo.clamp(min=0), limit).long()
    hi = torch.minimum(hi.clamp(min=0), limit).long()
    ext = hi - lo  # [I, N, 2]
    tiles_per_gauss = ext[..., 0] * ext[..., 1] * (radii > 0).all(-1)  # [I, N]

    # depth rank of every Gaussian inside its image (stable => ties by index)
    order = torch.sort(depths.detach(), dim=-1, stable=True).indices  # [I, N]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=device).expand(I, N))

    flat_counts = tiles_per_gauss.reshape(-1)
    hit = flat_counts.nonzero().squeeze(1)  # [V] flattened (image, gaussian) ids with >= 1 tile
    counts = flat_counts[hit]
    n_isects = int(counts.sum())
    src = torch.repeat_interleave(torch.arange(hit.numel(), device=device), counts, output_size=n_isects)
    local = torch.arange(n_isects, device=device) - (torch.cumsum(counts, 0) - counts)[src]
    g = hit[src]  # [n_isects] flattened ids
    lo_g, ext_x = lo.reshape(-1, 2)[g], ext.reshape(-1, 2)[g, 0]
    tile_x = lo_g[:, 0] + local % ext_x
    tile_y = lo_g[:, 1] + torch.div(local, ext_x, rounding_mode="floor")
    image = torch.div(g, N, rounding_mode="floor")
    tile = (image * th + tile_y) * tw + tile_x  # global tile id
    stride = max(N, 1)
    key = tile * stride + rank.reshape(-1)[g]
    key, perm = torch.sort(key)
    flatten_ids = g[perm]
    n_tiles = I * th * tw
    tile_counts = torch.bincount(torch.div(key, stride, rounding_mode="floor"), minlength=n_tiles)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.int64, device=device)
    torch.cumsum(tile_counts, 0, out=offsets[1:])
    return TileBins(offsets, flatten_ids, tiles_per_gauss, I, tile_size, tw, th, width, height)
