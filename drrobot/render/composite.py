"""Front-to-back alpha compositing of depth-sorted, tile-binned 2D Gaussians, forward and backward.

Per-pixel semantics are gsplat's (`RasterizeToPixels3DGSFwd.cu`): pixel centres at +0.5,
``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``, ``alpha = min(0.999, opacity * exp(-sigma))``,
skipped when ``sigma < 0`` or ``alpha < 1/255``; the Gaussian that would bring the transmittance to
``<= 1e-4`` stops the pixel and is not composited. Backgrounds are blended by the caller.

Two implementations share one autograd Function and one saved state (`n_proc`: how many entries of its
tile's list a pixel went through):

- ``"torch"``: vectorised over tiles and pixels, walks the depth-sorted lists in chunks of K Gaussians
  with bounded memory and stops a tile once all its pixels are saturated; runs on any device;
- ``"cpp"``: a small C++/OpenMP CPU kernel (``csrc/composite_cpu.cpp``, JIT-built on first use; see
  `extension.py`), same algorithm per pixel as gsplat's CUDA kernels.

The backward recomputes alphas instead of storing them; the torch version walks front to back and
gets the colour behind each Gaussian from the final colour (suffix = total - prefix).
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .extension import IMPLS, load_extension
from .projection import ALPHA_THRESHOLD
from .tiles import TileBins

MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
CHUNK_ELEMENTS = 1 << 21  # bound on tiles x pixels x Gaussians evaluated per vectorised step
MAX_CHUNK = 64  # Gaussians per tile per step (smaller: earlier stops; larger: fewer steps)


def composite(
    means2d: Tensor,  # [M, 2] (M = I * N flattened camera-major)
    conics: Tensor,  # [M, 3]
    colors: Tensor,  # [M, D]
    opacities: Tensor,  # [M]
    bins: TileBins,
    impl: str = "auto",
) -> Tuple[Tensor, Tensor]:
    """Composite the binned Gaussians; returns foreground colours [I, H, W, D] (no background) and
    alphas [I, H, W, 1]. Differentiable w.r.t. means2d, conics, colors and opacities.

    impl: "torch", "cpp" (CPU tensors only) or "auto" (cpp when it is available and applicable).
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "cpp" if means2d.device.type == "cpu" and load_extension() is not None else "torch"
    elif impl == "cpp":
        if means2d.device.type != "cpu":
            raise ValueError(f"impl='cpp' needs CPU tensors, got {means2d.device}")
        if load_extension() is None:
            raise RuntimeError("impl='cpp' requested but the C++ compositing extension is unavailable")
    fg, alphas, _ = _Composite.apply(means2d, conics, colors, opacities, bins, impl)
    return fg, alphas


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, bins: TileBins, impl: str):
        means2d, conics, colors, opacities = (t.contiguous() for t in (means2d, conics, colors, opacities))
        if impl == "cpp":
            fg, alphas, n_proc = load_extension().forward(
                means2d, conics, colors, opacities, bins.offsets, bins.flatten_ids,
                bins.n_images, bins.height, bins.width, bins.tile_size,
            )
        else:
            fg, alphas, n_proc = _forward_torch(means2d, conics, colors, opacities, bins)
        ctx.bins, ctx.impl = bins, impl
        ctx.save_for_backward(means2d, conics, colors, opacities, fg, alphas, n_proc)
        ctx.mark_non_differentiable(n_proc)
        return fg, alphas, n_proc

    @staticmethod
    def backward(ctx, v_fg, v_alphas, _v_n_proc):
        means2d, conics, colors, opacities, fg, alphas, n_proc = ctx.saved_tensors
        bins = ctx.bins
        v_fg, v_alphas = v_fg.contiguous(), v_alphas.contiguous()
        if ctx.impl == "cpp":
            grads = load_extension().backward(
                means2d, conics, colors, opacities, bins.offsets, bins.flatten_ids, bins.n_images,
                bins.height, bins.width, bins.tile_size, alphas, n_proc, v_fg, v_alphas,
            )  # per intersection: [n_isects, 6 + D] = (v_mean2d, v_conic, v_opacity, v_color)
            out = torch.zeros(means2d.shape[0], grads.shape[1], dtype=grads.dtype, device=grads.device)
            out.index_add_(0, bins.flatten_ids, grads)
            v_means2d, v_conics, v_opac, v_colors = out.split([2, 3, 1, colors.shape[1]], dim=1)
            v_opac = v_opac[:, 0]
        else:
            v_means2d, v_conics, v_colors, v_opac = _backward_torch(
                means2d, conics, colors, opacities, bins, fg, alphas, n_proc, v_fg, v_alphas
            )
        return v_means2d, v_conics, v_colors, v_opac, None, None


# ----------------------------------------------------------------------------------------- torch
def _to_tiles(img: Tensor, bins: TileBins) -> Tensor:
    """[I, H, W, D] -> [I * tile_height * tile_width, tile_size ** 2, D] (zero padded)."""
    I, H, W, D = img.shape
    ts, th, tw = bins.tile_size, bins.tile_height, bins.tile_width
    img = torch.nn.functional.pad(img, (0, 0, 0, tw * ts - W, 0, th * ts - H))
    return img.reshape(I, th, ts, tw, ts, D).permute(0, 1, 3, 2, 4, 5).reshape(I * th * tw, ts * ts, D)


def _to_image(tiles: Tensor, bins: TileBins) -> Tensor:
    """Inverse of `_to_tiles`: [n_tiles, tile_size ** 2, D] -> [I, H, W, D]."""
    ts, th, tw = bins.tile_size, bins.tile_height, bins.tile_width
    D = tiles.shape[-1]
    img = tiles.reshape(bins.n_images, th, tw, ts, ts, D).permute(0, 1, 3, 2, 4, 5)
    return img.reshape(bins.n_images, th * ts, tw * ts, D)[:, : bins.height, : bins.width]


class _TileWalker:
    """Shared set-up of both torch passes: the non-empty tiles, their pixel centres, and the
    gathering of chunk [k0, k0 + K) of their depth-sorted lists."""

    def __init__(self, means2d, conics, colors, opacities, bins: TileBins):
        dev, dt = means2d.device, means2d.dtype
        self.bins = bins
        counts = bins.offsets[1:] - bins.offsets[:-1]
        self.tiles = counts.nonzero().squeeze(1)  # [A] global ids of non-empty tiles
        self.start, self.count = bins.offsets[self.tiles], counts[self.tiles]  # [A]
        ts = bins.tile_size
        p = torch.arange(ts * ts, device=dev)
        tx = self.tiles % bins.tile_width
        ty = torch.div(self.tiles, bins.tile_width, rounding_mode="floor") % bins.tile_height
        px = tx[:, None] * ts + p % ts  # [A, P]
        py = ty[:, None] * ts + torch.div(p, ts, rounding_mode="floor")
        self.inside = (px < bins.width) & (py < bins.height)  # [A, P]
        self.px, self.py = px.to(dt) + 0.5, py.to(dt) + 0.5
        # one extra fully transparent Gaussian (index M) pads the chunks
        self.M = means2d.shape[0]
        self.gauss = torch.cat(
            [torch.cat([means2d, conics, opacities[:, None]], 1), torch.zeros(1, 6, dtype=dt, device=dev)]
        )  # [M + 1, 6]
        self.colors = torch.cat([colors, colors.new_zeros(1, colors.shape[1])])  # [M + 1, D]
        self.P = ts * ts

    def walk(self, end: Tensor, alive_fn=None):
        """Yield (sel, k0, K): tile subsets and list ranges [k0, k0 + K), front to back, over the tiles
        with end > k0 (and alive_fn(tiles) true); K adapts to the longest remaining list."""
        alive = torch.arange(self.tiles.numel(), device=end.device)
        k0 = 0
        while True:
            keep = end[alive] > k0
            if alive_fn is not None:
                keep &= alive_fn(alive)
            alive = alive[keep]
            if alive.numel() == 0:
                return
            K = min(MAX_CHUNK, 1 << (int(end[alive].max()) - k0 - 1).bit_length())
            for sel in alive.split(max(1, CHUNK_ELEMENTS // (self.P * K))):
                yield sel, k0, K
            k0 += K

    def gather(self, sel: Tensor, k0: int, K: int):
        """Chunk k0..k0+K of tiles `sel` ([S] indices into the non-empty tiles). Returns
        gid [S, K] (M for padding), sigma, alpha (after the 1/255 cut), exp(-sigma) and raw
        opacity * exp(-sigma) [S, P, K], pixel offsets dx, dy [S, P, K], gathered rows [S, K, 6]
        and colours [S, K, D]."""
        kk = k0 + torch.arange(K, device=sel.device)
        idx = self.start[sel, None] + kk  # [S, K]
        valid = kk < self.count[sel, None]
        ids = self.bins.flatten_ids
        gid = torch.where(valid, ids[idx.clamp(max=ids.numel() - 1)], self.M)
        g = self.gauss[gid]  # [S, K, 6]
        dx = g[:, None, :, 0] - self.px[sel][:, :, None]  # [S, P, K]
        dy = g[:, None, :, 1] - self.py[sel][:, :, None]
        a, b, c, op = (g[:, None, :, i] for i in (2, 3, 4, 5))
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        vis = torch.exp(-sigma)
        raw = op * vis
        alpha = raw.clamp(max=MAX_ALPHA)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        return gid, g, self.colors[gid], dx, dy, sigma, vis, raw, alpha


def _forward_torch(means2d, conics, colors, opacities, bins: TileBins):
    dev, dt, D = means2d.device, means2d.dtype, colors.shape[1]
    w = _TileWalker(means2d, conics, colors, opacities, bins)
    A, P = w.tiles.numel(), w.P
    T = torch.ones(A, P, dtype=dt, device=dev)
    fg = torch.zeros(A, P, D, dtype=dt, device=dev)
    done = ~w.inside
    n_proc = torch.where(w.inside, w.count[:, None], torch.zeros_like(w.count[:, None]))  # [A, P]
    for sel, k0, K in w.walk(w.count, lambda tiles: ~done[tiles].all(1)):
        _, _, col, _, _, _, _, _, alpha = w.gather(sel, k0, K)
        T0, done0 = T[sel], done[sel]
        next_T = T0[..., None] * torch.cumprod(1 - alpha, dim=-1)  # [S, P, K]
        ok = (next_T > MIN_TRANSMITTANCE) & ~done0[..., None]  # a prefix along K (next_T decreases)
        weights = torch.where(ok, alpha * next_T / (1 - alpha), torch.zeros_like(alpha))
        fg[sel] += torch.bmm(weights, col)
        T[sel] = torch.where(ok, next_T, T0[..., None]).amin(-1)
        stopping = ~done0 & (next_T[..., -1] <= MIN_TRANSMITTANCE)
        n_proc[sel] = torch.where(stopping, k0 + ok.sum(-1), n_proc[sel])
        done[sel] = done0 | stopping
    n_tiles = bins.n_tiles
    fg_all = torch.zeros(n_tiles, P, D, dtype=dt, device=dev)
    T_all = torch.ones(n_tiles, P, 1, dtype=dt, device=dev)
    n_all = torch.zeros(n_tiles, P, 1, dtype=torch.int32, device=dev)
    fg_all[w.tiles], T_all[w.tiles, :, 0], n_all[w.tiles, :, 0] = fg, T, n_proc.int()
    return _to_image(fg_all, bins), 1 - _to_image(T_all, bins), _to_image(n_all, bins)[..., 0].contiguous()


def _backward_torch(means2d, conics, colors, opacities, bins: TileBins, fg, alphas, n_proc, v_fg, v_alphas):
    dev, dt = means2d.device, means2d.dtype
    w = _TileWalker(means2d, conics, colors, opacities, bins)
    A, P = w.tiles.numel(), w.P
    grads = torch.zeros(w.M + 1, 6 + colors.shape[1], dtype=dt, device=dev)  # mean2d, conic, opacity, color
    tiles = w.tiles
    v_fg_t = _to_tiles(v_fg, bins)[tiles]  # [A, P, D]
    stop = _to_tiles(n_proc[..., None].long(), bins)[tiles, :, 0]  # [A, P]
    T_final = 1 - _to_tiles(alphas, bins)[tiles, :, 0]
    G_total = (v_fg_t * _to_tiles(fg, bins)[tiles]).sum(-1)  # [A, P] = v_fg . (sum_i w_i c_i)
    extra = _to_tiles(v_alphas, bins)[tiles, :, 0] * T_final  # d alpha_out / d a_i = T_final / (1 - a_i)
    end = torch.minimum(stop.amax(1), w.count)  # [A] entries any pixel of the tile went through
    T = torch.ones(A, P, dtype=dt, device=dev)
    G_acc = torch.zeros(A, P, dtype=dt, device=dev)
    for sel, k0, K in w.walk(end):
        gid, g, col, dx, dy, _, vis, raw, alpha = w.gather(sel, k0, K)
        ok = (k0 + torch.arange(K, device=dev)) < stop[sel][..., None]  # [S, P, K]
        alpha = torch.where(ok, alpha, torch.zeros_like(alpha))
        one_m = 1 - alpha
        T_incl = T[sel][..., None] * torch.cumprod(one_m, dim=-1)
        T_excl = T_incl / one_m
        weights = alpha * T_excl  # [S, P, K]
        vf = v_fg_t[sel]  # [S, P, D]
        gc = torch.bmm(vf, col.transpose(1, 2))  # [S, P, K] v_fg . c_i
        G_cum = G_acc[sel][..., None] + torch.cumsum(weights * gc, dim=-1)
        # d out / d a_i = c_i T_i - (colour behind i) / (1 - a_i) + alpha-output term
        v_a = gc * T_excl + (extra[sel][..., None] - G_total[sel][..., None] + G_cum) / one_m
        v_a = torch.where(ok & (alpha > 0) & (raw <= MAX_ALPHA), v_a, torch.zeros_like(v_a))
        v_sig = -raw * v_a
        sdx, sdy = (v_sig * dx).sum(1), (v_sig * dy).sum(1)  # [S, K]
        a, b, c = g[..., 2], g[..., 3], g[..., 4]
        chunk = torch.cat(
            [
                torch.stack(
                    [
                        a * sdx + b * sdy, b * sdx + c * sdy,
                        0.5 * (v_sig * dx * dx).sum(1), (v_sig * dx * dy).sum(1), 0.5 * (v_sig * dy * dy).sum(1),
                        (vis * v_a).sum(1),
                    ],
                    dim=-1,
                ),
                torch.bmm(weights.transpose(1, 2), vf),
            ],
            dim=-1,
        )  # [S, K, 6 + D]
        grads.index_add_(0, gid.reshape(-1), chunk.reshape(-1, chunk.shape[-1]))
        T[sel], G_acc[sel] = T_incl[..., -1], G_cum[..., -1]
    grads = grads[:-1]
    return grads[:, :2], grads[:, 2:5], grads[:, 6:], grads[:, 5]
