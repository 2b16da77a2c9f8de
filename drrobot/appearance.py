"""Pose-dependent appearance deformation: per-Gaussian deltas of scale, rotation, opacity and colour.

An MLP reads each Gaussian's encoded canonical position, its encoded posed position and the normalised joint
vector, and outputs additive deltas:

    log-scale  [3]   opacity logit  [1]   sh0  [3]   (shN [3(K-1)] when `deform_sh_rest`)
    quaternion [4]   added to the canonical (unnormalised) quaternion before skinning rotates it

Its head is zero-initialised, so a fresh field is the identity; `enabled=False` (or `AppearanceConfig(enabled=
False)`) removes it entirely, the paper's "No Deform" ablation. The first layer is split into a canonical part,
computed once for the N Gaussians, and posed/joint parts, so B poses cost one [B, N, H] layer more, not B full
input layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from drrobot.nn import PositionEncoder, matmul_precision, mlp


@dataclass
class AppearanceConfig:
    """Hyper-parameters of the appearance-deformation field (saved in checkpoints)."""

    enabled: bool = True  # False: the "No Deform" ablation (no deformation network at all)
    hidden: int = 128  # MLP width
    layers: int = 3  # hidden layers (the split input layer counts as one)
    num_freqs: int = 4  # Fourier frequencies of the position encodings
    deform_sh_rest: bool = False  # also output deltas of the higher SH bands


@dataclass
class AppearanceDelta:
    """Additive deltas for B poses of N Gaussians (all zero at initialisation)."""

    scales: Tensor  # [B, N, 3] log-scale
    quats: Tensor  # [B, N, 4] added to the canonical wxyz quaternion
    opacities: Tensor  # [B, N] logit
    sh0: Tensor  # [B, N, 1, 3]
    shN: Tensor | None  # [B, N, K-1, 3], or None when `deform_sh_rest` is off


class AppearanceField(nn.Module):
    """Appearance-deformation MLP (see the module docstring)."""

    def __init__(self, config: AppearanceConfig, center: Tensor, half_extent: float | Tensor, num_joints: int,
                 sh_degree: int):  # fmt: skip
        super().__init__()
        self.config = config
        self.num_sh_rest = (sh_degree + 1) ** 2 - 1
        self.encoder = PositionEncoder(center, half_extent, config.num_freqs)
        out_dim = 3 + 4 + 1 + 3 + (3 * self.num_sh_rest if config.deform_sh_rest else 0)
        self.in_canonical = nn.Linear(self.encoder.out_dim, config.hidden)
        self.in_posed = nn.Linear(self.encoder.out_dim, config.hidden, bias=False)
        self.in_joints = nn.Linear(num_joints, config.hidden, bias=False)
        self.trunk = mlp(config.hidden, config.hidden, config.layers - 1, out_dim)
        self.matmul_dtype = "float32"
        """Precision of the MLP's products (see `drrobot.nn.matmul_precision`); a run-time setting, not saved."""

    def forward(self, canonical_means: Tensor, posed_means: Tensor, joints_normalized: Tensor) -> AppearanceDelta:
        """canonical_means [N, 3], posed_means [B, N, 3], joints_normalized [B, J] in [-1, 1] -> deltas."""
        with matmul_precision(self.matmul_dtype, canonical_means.device):
            hidden = (
                self.in_canonical(self.encoder(canonical_means))  # [N, H]
                + self.in_posed(self.encoder(posed_means))  # [B, N, H]
                + self.in_joints(joints_normalized)[:, None, :]  # [B, 1, H]
            ).relu()
            out = self.trunk(hidden).float()  # [B, N, D]
        B, N = out.shape[:2]
        return AppearanceDelta(
            scales=out[..., 0:3],
            quats=out[..., 3:7],
            opacities=out[..., 7],
            sh0=out[..., 8:11].reshape(B, N, 1, 3),
            shN=out[..., 11:].reshape(B, N, self.num_sh_rest, 3) if self.config.deform_sh_rest else None,
        )
