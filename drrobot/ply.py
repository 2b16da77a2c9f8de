"""Standard 3DGS `.ply` export/import (the layout of the original 3DGS code, read by common splat viewers).

One binary little-endian `vertex` element, float32 properties in this order:

    x y z  nx ny nz  f_dc_0..2  f_rest_0..3(K-1)-1  opacity  scale_0..2  rot_0..3

`f_rest` is channel-major (all red higher-band coefficients, then green, then blue), as 3DGS and gsplat's
`export_splats` write it; `opacity` is a logit, `scale_*` are logs of standard deviations, `rot_*` is a
(w, x, y, z) quaternion; normals are zero. Functions take and return activated values (linear scales,
opacities in (0, 1)) so they plug into `rasterize`; SH is [N, K, 3] (DC first).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError
from torch import Tensor

from drrobot.errors import DrRobotError
from drrobot.io import atomic_path


class PlyFormatError(DrRobotError, ValueError):
    """A `.ply` file that is not a readable 3DGS splat file."""


@dataclass
class SplatPly:
    """Gaussians read from a 3DGS `.ply` (activated values)."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, as stored
    scales: Tensor  # [N, 3] linear
    opacities: Tensor  # [N] in (0, 1)
    sh: Tensor  # [N, K, 3]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1


def export_ply(
    path: str | os.PathLike,
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N] in (0, 1)
    sh: Tensor,  # [N, K, 3], K = (degree + 1)^2
) -> Path:
    """Write Gaussians as a 3DGS `.ply` (atomically: temp file then rename). Returns the path."""
    n = means.shape[0]
    k = sh.shape[1]
    if sh.ndim != 3 or sh.shape[2] != 3 or math.isqrt(k) ** 2 != k:
        raise ValueError(f"sh must be [N, K, 3] with K = (degree + 1)^2, got {tuple(sh.shape)}")
    for name, t, shape in [("means", means, (n, 3)), ("quats", quats, (n, 4)), ("scales", scales, (n, 3)),
                           ("opacities", opacities, (n,)), ("sh", sh, (n, k, 3))]:  # fmt: skip
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    opacities = opacities.clamp(1e-7, 1 - 1e-7)
    columns = {
        **_split(means, "x y z"),
        **_split(torch.zeros_like(means), "nx ny nz"),
        **_split(sh[:, 0], "f_dc_0 f_dc_1 f_dc_2"),
        **_split(sh[:, 1:].transpose(1, 2).reshape(n, -1), " ".join(f"f_rest_{i}" for i in range(3 * (k - 1)))),
        "opacity": torch.log(opacities / (1 - opacities)),
        **_split(scales.log(), "scale_0 scale_1 scale_2"),
        **_split(quats, "rot_0 rot_1 rot_2 rot_3"),
    }
    vertex = np.empty(n, dtype=[(name, "<f4") for name in columns])
    for name, column in columns.items():
        vertex[name] = column.detach().cpu().float().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(tmp))
    return path


def import_ply(path: str | os.PathLike) -> SplatPly:
    """Read a 3DGS `.ply` (ours or another exporter's: extra properties are ignored, normals optional)."""
    try:
        vertex = PlyData.read(str(path))["vertex"].data
    except (PlyParseError, KeyError, ValueError, EOFError) as err:
        raise PlyFormatError(f"{path}: not a readable 3DGS .ply ({err})") from err
    names = set(vertex.dtype.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", *[f"scale_{i}" for i in range(3)],
                *[f"rot_{i}" for i in range(4)]]  # fmt: skip
    missing = [name for name in required if name not in names]
    if missing:
        raise PlyFormatError(f"{path}: missing 3DGS vertex properties {missing}")
    num_rest = sum(name.startswith("f_rest_") for name in names)
    k = num_rest // 3 + 1
    if num_rest % 3 or math.isqrt(k) ** 2 != k:
        raise PlyFormatError(f"{path}: {num_rest} f_rest properties do not form SH bands of 3 colours")

    def stack(names: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[name], dtype=np.float32) for name in names], -1))

    n = len(vertex)
    rest = stack([f"f_rest_{i}" for i in range(num_rest)]) if num_rest else torch.zeros(n, 0)  # [N, 3(K-1)]
    sh = torch.cat([stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None], rest.reshape(n, 3, k - 1).transpose(1, 2)], 1)
    return SplatPly(
        means=stack(["x", "y", "z"]),
        quats=stack([f"rot_{i}" for i in range(4)]),
        scales=stack([f"scale_{i}" for i in range(3)]).exp(),
        opacities=torch.sigmoid(stack(["opacity"])[:, 0]),
        sh=sh,
    )


def _split(t: Tensor, names: str) -> dict[str, Tensor]:
    """[N, D] -> {name_d: [N]} for the D space-separated names."""
    return dict(zip(names.split(), t.unbind(-1)))
