"""Random test scenes with the awkward cases the rasterizer must handle."""

from __future__ import annotations

import torch

from render_reference import intrinsics, look_at


def awkward_scene(seed: int = 0, n_random: int = 16, width: int = 37, height: int = 29, dtype=torch.float64):
    """Two cameras looking at the origin; Gaussians include: random ones, one behind camera 0, one
    partly off-screen, a very thin one, a very large one, two overlapping at equal depth and an opaque
    stack that saturates pixels (transmittance early stop). Returns a dict of rasterize kwargs."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=dtype)

    means = [torch.randn(n_random, 3, generator=g, dtype=dtype) * 0.5]
    scales = [torch.exp(rand(n_random, 3) * 2 - 3.5)]
    opac = [rand(n_random) * 0.9 + 0.1]
    special_means = torch.tensor(
        [
            [0.0, 0.0, -3.6],  # behind camera 0 (at z = -3)
            [1.7, 0.2, 0.0],  # partly off-screen
            [0.1, -0.3, 0.3],  # very thin
            [0.0, 0.0, 1.5],  # very large
            [-0.4, 0.4, -0.5],  # equal depth pair (camera 0 has R = I)
            [-0.35, 0.45, -0.5],
            [0.5, -0.5, -0.8],  # opaque stack
            [0.52, -0.48, -0.7],
            [0.48, -0.5, -0.6],
        ],
        dtype=dtype,
    )
    special_scales = torch.tensor(
        [[0.2] * 3, [0.15] * 3, [0.4, 1e-4, 1e-4], [2.5, 2.0, 1.5], [0.15] * 3, [0.12] * 3,
         [0.2] * 3, [0.2] * 3, [0.2] * 3],
        dtype=dtype,
    )
    special_opac = torch.tensor([0.9, 0.8, 0.9, 0.35, 0.7, 0.6, 1.0, 1.0, 1.0], dtype=dtype)
    means = torch.cat(means + [special_means])
    scales = torch.cat(scales + [special_scales])
    opacities = torch.cat(opac + [special_opac])
    N = means.shape[0]
    quats = torch.randn(N, 4, generator=g, dtype=dtype)
    colors = rand(N, 3)
    viewmats = torch.stack([look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0)), look_at((2.0, -1.0, -2.5), (0.1, 0.0, 0.0))])
    Ks = torch.stack([intrinsics(width, height, 60.0), intrinsics(width, height, 50.0)])
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=viewmats.to(dtype), Ks=Ks.to(dtype), width=width, height=height)


def cluster_scene(n: int = 2000, width: int = 96, height: int = 80, seed: int = 0, dtype=torch.float32,
                  device="cpu"):
    """A denser scene: n small, mostly opaque Gaussians in a blob filling ~40% of two views."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.45, 0.35, 0.3], dtype=torch.float64)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.4 - 3.3)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 0.5
    colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    viewmats = torch.stack([look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0)), look_at((1.5, -1.0, -2.4), (0.0, 0.0, 0.0))])
    Ks = torch.stack([intrinsics(width, height, 50.0), intrinsics(width, height, 55.0)])
    out = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmats, Ks=Ks)
    out = {k: v.to(device=device, dtype=dtype) for k, v in out.items()}
    return dict(out, width=width, height=height)
