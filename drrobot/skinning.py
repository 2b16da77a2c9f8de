"""Implicit linear-blend skinning: a field of per-Gaussian weights over the robot's links, and the blend.

Weights are a softmax over the L links of `MLP(enc(x), offsets of x to the link frames at the canonical pose)
+ prior_logit * [link == source link]`, evaluated at the canonical Gaussian means x. The MLP head starts at zero,
so a fresh field gives each Gaussian ~one-hot weights on the link it was sampled from (rigid per-link motion);
training (Chamfer on point clouds, then images) lets Gaussians near joints blend.

A Gaussian moves by the blended rigid motion `sum_j w_j T_j(q) T_j(q0)^-1` (`relative_transforms`): its mean by
the blended 3x4 matrix (classic LBS), its rotation by the normalised blend of the links' rotation quaternions
(each flipped into the hemisphere of the Gaussian's dominant link), composed with the Gaussian's own quaternion.

>>> field = SkinningField(SkinningConfig(), center, half_extent, canonical_link_poses)   # [L, 4, 4]
>>> w = field(means, link_ids)                                                   # [N, L]
>>> rel = relative_transforms(link_poses, canonical_link_poses)                 # [B, L, 4, 4]
>>> blend = blend_transforms(w, rel)
>>> blend.apply_points(means), blend.apply_quats(quats)                         # [B, N, 3], [B, N, 4]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from drrobot.nn import PositionEncoder, matmul_precision, mlp
from drrobot.quaternion import quat_multiply, rotmat_to_quat
from drrobot.render.extension import fused_kernels, load_extension


@dataclass
class SkinningConfig:
    """Hyper-parameters of the skinning field (saved in checkpoints)."""

    hidden: int = 256  # MLP width
    layers: int = 4  # hidden layers
    num_freqs: int = 6  # Fourier frequencies of the position encoding
    prior_logit: float = 8.0  # logit bonus on the source link: weight e^8 / (e^8 + L - 1), 0.996 for L = 12


class SkinningField(nn.Module):
    """Per-Gaussian skinning weights over the robot's links (see the module docstring)."""

    def __init__(
        self,
        config: SkinningConfig,
        center: Tensor,  # [3] centre of the canonical bounding box
        half_extent: float | Tensor,  # half its longest side (metres)
        canonical_link_poses: Tensor,  # [L, 4, 4] world poses of the links at the canonical pose
    ):
        super().__init__()
        self.config = config
        self.encoder = PositionEncoder(center, half_extent, config.num_freqs)
        origins = canonical_link_poses[:, :3, 3].float().clone()  # derived from the robot: not saved
        self.register_buffer("link_origins", origins, persistent=False)  # [L, 3]
        num_links = self.link_origins.shape[0]
        self.mlp = mlp(self.encoder.out_dim + 3 * num_links, config.hidden, config.layers, num_links)
        self.matmul_dtype = "float32"
        """Precision of the MLP's products ("bfloat16": faster on CPUs with native bf16, see `matmul_precision`);
        a run-time setting, not saved."""

    @property
    def num_links(self) -> int:
        return self.link_origins.shape[0]

    def logits(self, means: Tensor, link_ids: Tensor) -> Tensor:
        """Skinning logits [N, L] at canonical means [N, 3]; link_ids [N] (-1: no prior)."""
        offsets = (means[:, None, :] - self.link_origins) / self.encoder.half_extent  # [N, L, 3]
        features = torch.cat([self.encoder(means), offsets.flatten(1)], dim=-1)  # [N, F + 3L]
        own_link = link_ids[:, None] == torch.arange(self.num_links, device=link_ids.device)  # [N, L]
        with matmul_precision(self.matmul_dtype, means.device):
            out = self.mlp(features)  # [N, L]
        return out.float() + self.config.prior_logit * own_link

    def forward(self, means: Tensor, link_ids: Tensor) -> Tensor:
        """Skinning weights [N, L] (rows sum to 1) at canonical means [N, 3]; link_ids [N] (-1: no prior)."""
        return self.logits(means, link_ids).softmax(dim=-1)


def relative_transforms(link_poses: Tensor, canonical_link_poses: Tensor) -> Tensor:
    """T_j(q) T_j(q0)^-1: [B, L, 4, 4] posed link poses, [L, 4, 4] canonical ones -> [B, L, 4, 4]."""
    R0 = canonical_link_poses[:, :3, :3]  # [L, 3, 3]
    t0 = canonical_link_poses[:, :3, 3:]  # [L, 3, 1]
    inverse = torch.cat([R0.transpose(-1, -2), -R0.transpose(-1, -2) @ t0], dim=-1)  # [L, 3, 4]
    bottom = canonical_link_poses[:, 3:, :]  # [L, 1, 4] = [0, 0, 0, 1]
    return link_poses @ torch.cat([inverse, bottom], dim=-2)


@dataclass
class BlendedTransforms:
    """Per-Gaussian blended rigid motions for B poses (from `blend_transforms`)."""

    affine: Tensor  # [B, N, 3, 4] sum_j w_j [R_j | t_j]
    rotations: Tensor  # [B, N, 4] unit wxyz, normalised blend of the links' rotations

    def apply_points(self, points: Tensor) -> Tensor:
        """Canonical points [N, 3] -> posed [B, N, 3]."""
        return (self.affine[..., :3] @ points[..., None]).squeeze(-1) + self.affine[..., 3]

    def apply_quats(self, quats: Tensor) -> Tensor:
        """Canonical rotations [N, 4] or [B, N, 4] (wxyz, any norm) -> posed unit quaternions [B, N, 4]."""
        return quat_multiply(self.rotations, quats / quats.norm(dim=-1, keepdim=True))


def blend_transforms(weights: Tensor, transforms: Tensor) -> BlendedTransforms:
    """Blend link transforms [B, L, 4, 4] (`relative_transforms`) with skinning weights [N, L].

    Memory is O(B N L) (sign table of the quaternion blend): 48 MB for B = 8, N = 50k, L = 30.
    """
    B, L = transforms.shape[:2]
    affine = (weights @ transforms[:, :, :3, :].reshape(B, L, 12)).reshape(B, -1, 3, 4)  # [B, N, 3, 4]
    link_quats = rotmat_to_quat(transforms[:, :, :3, :3])  # [B, L, 4]
    signed = weights * _hemisphere_signs(link_quats)[:, weights.argmax(dim=-1)]  # [B, N, L], per main link
    rotations = signed @ link_quats  # [B, N, 4]
    return BlendedTransforms(affine, rotations / rotations.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def _hemisphere_signs(link_quats: Tensor) -> Tensor:
    """[B, L, L]: +-1 that flips link l's quaternion (of [B, L, 4]) into link k's hemisphere, at [b, k, l]."""
    dots = link_quats @ link_quats.transpose(1, 2)  # [B, L, L]
    return torch.where(dots < 0, -1.0, 1.0).to(dots)


def skin_gaussians(weights: Tensor, transforms: Tensor, means: Tensor, quats: Tensor, impl: str = "auto"
                   ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Gaussians [N] moved by the links' motions [B, L, 4, 4] (`relative_transforms`) with skinning weights [N, L]:
    means [N, 3] -> [B, N, 3], rotations [N, 4] (wxyz, any norm) -> unit [B, N, 4]; `blend_transforms` applied.

    impl: "torch" (the blend above, everything differentiable), "cpp" (one fused C++ loop forward and backward,
    `csrc/skin_cpu.cpp`: CPU, gradients for `transforms` only, so weights, means and quats must not require them,
    as in a fit or under `torch.no_grad()`) or "auto" (cpp where it applies and the extension is available). The
    tests compare the two.
    """
    constants = not torch.is_grad_enabled() or not any(t.requires_grad for t in (weights, means, quats))
    applies = transforms.device.type == "cpu" and constants
    if fused_kernels(impl, applies, "CPU tensors and weights, means and quats without gradient") is not None:
        link_quats = rotmat_to_quat(transforms[:, :, :3, :3])  # [B, L, 4]
        table = _hemisphere_signs(link_quats)[..., None] * link_quats[:, None]  # [B, L, L, 4] flipped per main link
        dtype = transforms.dtype
        return _SkinCpp.apply(weights.to(dtype).contiguous(), transforms[:, :, :3, :].contiguous(),
                              table.contiguous(), means.to(dtype).contiguous(), quats.to(dtype).contiguous())  # fmt: skip
    blend = blend_transforms(weights, transforms)
    return blend.apply_points(means), blend.apply_quats(quats)


class _SkinCpp(torch.autograd.Function):
    """The fused C++ skinning; its backward recomputes the blends."""

    @staticmethod
    def forward(ctx, weights, affine, table, means, quats):
        ctx.save_for_backward(weights, affine, table, means, quats)
        return tuple(load_extension().skin_forward(weights, affine, table, means, quats))

    @staticmethod
    def backward(ctx, v_means, v_quats):
        weights, affine, table, means, quats = ctx.saved_tensors
        B, N = affine.shape[0], weights.shape[0]
        v_means = means.new_zeros(B, N, 3) if v_means is None else v_means.contiguous()
        v_quats = means.new_zeros(B, N, 4) if v_quats is None else v_quats.contiguous()
        v_affine, v_table = load_extension().skin_backward(weights, affine, table, means, quats, v_means, v_quats)
        return None, v_affine, v_table, None, None
