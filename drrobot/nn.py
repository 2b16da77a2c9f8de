"""Small network pieces shared by the skinning and appearance fields: position encoding, MLPs, and the precision
their matrix products run in."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn


class PositionEncoder(nn.Module):
    """Normalise positions to the robot's canonical bounding box, then Fourier-encode them.

    `x -> [u, sin(2^k pi u), cos(2^k pi u) for k < num_freqs]` with `u = (x - center) / half_extent`,
    so the canonical robot spans [-1, 1]. `center` and `half_extent` are buffers (saved in checkpoints).
    """

    def __init__(self, center: Tensor, half_extent: float | Tensor, num_freqs: int):
        super().__init__()
        self.num_freqs = num_freqs
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).reshape(3).clone())  # [3]
        self.register_buffer("half_extent", torch.as_tensor(half_extent, dtype=torch.float32).reshape(()).clone())  # []
        freqs = math.pi * 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("freqs", freqs, persistent=False)  # [F]

    @property
    def out_dim(self) -> int:
        return 3 + 6 * self.num_freqs

    def normalize(self, x: Tensor) -> Tensor:
        """[..., 3] metres -> [..., 3] roughly in [-1, 1]."""
        return (x - self.center) / self.half_extent

    def forward(self, x: Tensor) -> Tensor:
        u = self.normalize(x)  # [..., 3]
        angles = (u[..., None] * self.freqs).flatten(-2)  # [..., 3F]
        return torch.cat([u, angles.sin(), angles.cos()], dim=-1)  # [..., 3 + 6F]


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int, zero_last: bool = True) -> nn.Sequential:
    """`layers` hidden Linear+ReLU layers of width `hidden`, then a Linear head (zero-initialised if asked,
    so the network's output starts at exactly 0)."""
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    head = nn.Linear(width, out_dim)
    if zero_last:
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    modules.append(head)
    return nn.Sequential(*modules)


FIELD_DTYPES = ("float32", "bfloat16")


def matmul_precision(dtype: str, device: torch.device):
    """Context in which the fields' Linear layers multiply in `dtype` ("float32" or "bfloat16"; autocast, so the
    weights stay float32 and the caller casts outputs back). bfloat16 triples an MLP's forward+backward speed
    on CPUs with native bf16 (AVX512-BF16, AMX) and loses ~3 significant digits in the fields' outputs."""
    if dtype not in FIELD_DTYPES:
        raise ValueError(f"field dtype must be one of {FIELD_DTYPES}, got {dtype!r}")
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolve_field_dtype(setting: str, device: torch.device) -> str:
    """A field dtype setting for `device`: "auto" is "bfloat16" on CPUs that multiply bf16 natively (AVX512-BF16,
    which AMX CPUs have too; elsewhere it is emulated and slower than float32), "float32" otherwise (GPUs
    included: their MLPs are not the bottleneck); "float32" and "bfloat16" stay as they are."""
    if setting != "auto":
        return setting
    return "bfloat16" if device.type == "cpu" and torch.cpu._is_avx512_bf16_supported() else "float32"
