"""`RobotModel`: canonical Gaussians + implicit LBS + appearance deformation, posed by differentiable FK.

>>> s = drrobot.data.reader.load_surface("datasets/panda")                 # the dataset's surface.npz
>>> model = RobotModel.from_surface("panda", s["points_local"], s["link_ids"], s["colors"])
>>> out = model.render(joints, viewmats, Ks, 256, 256, background=torch.ones(3))   # RenderOutput
>>> out.images, out.alphas          # [B, C, H, W, 3], [B, C, H, W, 1]; differentiable w.r.t. joints, viewmats,
>>> out.means2d                     # [B, C, N, 2]                          Ks, base_pose and all parameters
>>> w = model.skinning_weights()                                        # [N, L], evaluated once
>>> out = model.render(joints, viewmats, Ks, 256, 256, features=w, skinning_weights=w)
>>> out.features                    # [B, C, H, W, L] each pixel's mixture of links (for link masks)
>>> posed = model.pose_gaussians(joints)                    # PosedGaussians: means [B, N, 3], quats, ...
>>> uv, depth, in_front = project_points(posed.means, viewmats, Ks)   # [B, C, N, 2], [B, C, N] x2
>>> model.export_ply("robot.ply", joints=None)              # canonical (or posed) Gaussians, 3DGS .ply

Joints are pose vectors [B, J] in `model.joint_spec.names` order (radians / metres). A vector of the wrong
length or with non-finite entries raises ValueError. Entries outside the joint limits are handled by
`ModelConfig.joint_limits`: "clamp" (default) clamps them into the limits (continuous joints excepted) and
warns; "error" raises ValueError naming the joints. Clamping stops gradients past a limit, so optimisers
should keep joints inside (e.g. joints = `joint_spec.denormalize(tanh(z))`) or project after each step.

For a trainer: `model.gaussians.params` (ParameterDict, one optimizer per key: the gsplat strategy contract;
`out.metas[b]["means2d"]` retains its grad for densification), `model.skinning.parameters()` (fit first with a
Chamfer loss between `pose_gaussians(joints).means` and the dataset's point clouds), and
`model.appearance.parameters()` (`model.appearance` is None when disabled). `render(sh_degree=d)` renders
with the first d SH bands (progressive SH). Save/load with `drrobot.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from drrobot.appearance import AppearanceConfig, AppearanceField
from drrobot.errors import UsageError
from drrobot.gaussians import CanonicalGaussians
from drrobot.kinematics import RobotKinematics
from drrobot.nn import matmul_precision
from drrobot.ply import export_ply
from drrobot.render import RASTERIZE_MODES, rasterize, sh_colors
from drrobot.robots import RobotDescription, load_robot
from drrobot.skinning import SkinningConfig, SkinningField, blend_transforms, relative_transforms, skin_gaussians

JOINT_LIMIT_POLICIES = ("clamp", "error")
LIMIT_TOLERANCE = 1e-5  # radians / metres outside a limit that pass silently (float round trips)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `RobotModel` besides the robot and its tensors (saved in checkpoints)."""

    sh_degree: int = 3
    """Spherical-harmonics degree of the Gaussians' colours (0..3)."""
    init_opacity: float = 0.3
    """Opacity of new Gaussians, in (0, 1)."""
    init_scale_factor: float = 1.0
    """Initial scale = this factor x the mean distance to the 3 nearest surface samples."""
    joint_limits: Literal["clamp", "error"] = "clamp"
    """Joints outside their limits: clamp them (with a warning) or raise an error."""
    rasterize_mode: Literal["antialiased", "classic"] = "antialiased"
    """Screen-space filter: "antialiased" scales opacities so the eps2d blur keeps each Gaussian's mass
    (Mip-Splatting's 2D filter); "classic" (gsplat's default, and what common 3DGS viewers do) widens
    sub-pixel Gaussians instead, so thin parts render too wide."""
    eps2d: float = 0.05
    """Pixels^2 added to every projected 2D covariance. 0.05 stays below a pixel's box filter (variance 1/12
    px^2), which is how the dataset's supersampled pixels average the scene, so the filter never blurs more
    than the targets are blurred (0.1 cost the Panda's fingers ~0.01 IoU; common viewers use 0.3)."""
    skinning: SkinningConfig = field(default_factory=SkinningConfig)
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)

    def __post_init__(self):
        problems = []
        if isinstance(self.sh_degree, bool) or not isinstance(self.sh_degree, int) or not 0 <= self.sh_degree <= 3:
            problems.append(f"sh_degree must be an integer from 0 to 3, got {self.sh_degree!r}")
        if not _is_number(self.init_opacity) or not 0.0 < self.init_opacity < 1.0:
            problems.append(f"init_opacity must be in (0, 1), got {self.init_opacity!r}")
        if not _is_number(self.init_scale_factor) or not 0.0 < self.init_scale_factor < math.inf:
            problems.append(f"init_scale_factor must be a positive number, got {self.init_scale_factor!r}")
        if self.joint_limits not in JOINT_LIMIT_POLICIES:
            problems.append(f"joint_limits must be one of {JOINT_LIMIT_POLICIES}, got {self.joint_limits!r}")
        if self.rasterize_mode not in RASTERIZE_MODES:
            problems.append(f"rasterize_mode must be one of {RASTERIZE_MODES}, got {self.rasterize_mode!r}")
        if not _is_number(self.eps2d) or not 0.0 <= self.eps2d < math.inf:
            problems.append(f"eps2d must be finite and >= 0, got {self.eps2d!r}")
        if problems:
            raise UsageError("invalid model settings (--model.*): " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        skinning = SkinningConfig(**d.pop("skinning", {}))
        appearance = AppearanceConfig(**d.pop("appearance", {}))
        return cls(**d, skinning=skinning, appearance=appearance)


def _broadcast(name: str, value, shape: tuple[int, ...], device) -> Tensor:
    """`value` as a float tensor broadcast to `shape`, or a ValueError naming the argument and both shapes."""
    tensor = torch.as_tensor(value, dtype=torch.float32, device=device)
    try:
        return tensor.broadcast_to(shape)
    except RuntimeError as err:
        raise ValueError(f"{name} of shape {tuple(tensor.shape)} does not broadcast to {shape}") from err


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class PosedGaussians:
    """Gaussians at B poses, activated, ready for `rasterize`."""

    means: Tensor  # [B, N, 3] world
    quats: Tensor  # [B, N, 4] unit wxyz
    scales: Tensor  # [B, N, 3] linear standard deviations
    opacities: Tensor  # [B, N] in (0, 1)
    sh: Tensor  # [B, N, K, 3] SH coefficients
    weights: Tensor  # [N, L] skinning weights
    link_poses: Tensor  # [B, L, 4, 4] world poses of the links


@dataclass
class RenderOutput:
    """`RobotModel.render` results for B poses x C cameras."""

    images: Tensor  # [B, C, H, W, 3]
    alphas: Tensor  # [B, C, H, W, 1]
    depths: Tensor | None  # [B, C, H, W, 1] expected depth (render_mode "RGB+ED"), else None
    features: Tensor | None  # [B, C, H, W, F] the `features` argument rendered (background 0), else None
    means2d: Tensor  # [B, C, N, 2] projected Gaussian means, pixels
    radii: Tensor  # [B, C, N, 2] int32, 0 = culled
    posed: PosedGaussians
    metas: list[dict]  # per pose, rasterize's meta (its `means2d` retains grad, for densification)


class RobotModel(nn.Module):
    """A robot's differentiable self-model (see the module docstring)."""

    def __init__(self, robot: RobotDescription | str, gaussians: CanonicalGaussians, config: ModelConfig | None = None):
        super().__init__()
        self.robot = robot if isinstance(robot, RobotDescription) else load_robot(robot)
        self.config = config or ModelConfig()
        if gaussians.sh_degree != self.config.sh_degree:
            raise ValueError(f"Gaussians have SH degree {gaussians.sh_degree}, config says {self.config.sh_degree}")
        device = gaussians.means.device
        self.kinematics = RobotKinematics.from_robot(self.robot, device=device)
        spec = self.kinematics.joint_spec
        # Derived from the robot (not saved): canonical pose and link poses, joint limits.
        self.register_buffer("canonical_joints", self.kinematics.canonical_joints(), persistent=False)  # [J]
        canonical_poses = self.kinematics.link_poses(self.canonical_joints[None])[0]  # [L, 4, 4]
        self.register_buffer("canonical_link_poses", canonical_poses, persistent=False)  # [L, 4, 4]
        self.register_buffer("joint_lower", torch.as_tensor(spec.lower, dtype=torch.float32), persistent=False)  # [J]
        self.register_buffer("joint_upper", torch.as_tensor(spec.upper, dtype=torch.float32), persistent=False)  # [J]
        self.register_buffer("joint_limited", torch.as_tensor(~spec.continuous), persistent=False)  # [J] bool

        self.gaussians = gaussians
        with torch.no_grad():
            lo, hi = gaussians.means.min(0).values, gaussians.means.max(0).values
            center, half_extent = (lo + hi) / 2, ((hi - lo).max() / 2).clamp_min(1e-3)
        self.skinning = SkinningField(self.config.skinning, center, half_extent, canonical_poses)
        self.appearance = (
            AppearanceField(self.config.appearance, center, half_extent, spec.dof, self.config.sh_degree)
            if self.config.appearance.enabled
            else None
        )
        self.to(device)

    @classmethod
    def from_surface(
        cls,
        robot: RobotDescription | str,
        points_local: Tensor | np.ndarray,  # [P, 3] in link frames
        link_ids: Tensor | np.ndarray,  # [P] link index (body id - 1)
        colors: Tensor | np.ndarray,  # [P, 3] in [0, 1]
        config: ModelConfig | None = None,
        device: torch.device | str | None = None,
    ) -> "RobotModel":
        """A fresh model from surface samples (the dataset's `surface.npz`): one Gaussian per sample, placed at
        the canonical pose, skinning prior on its link, appearance deformation at identity."""
        config = config or ModelConfig()
        robot = robot if isinstance(robot, RobotDescription) else load_robot(robot)
        kinematics = RobotKinematics.from_robot(robot, device=device)
        link_ids = torch.as_tensor(link_ids, dtype=torch.long, device=kinematics.device)  # [P]
        num_links = len(kinematics.link_names)
        if link_ids.numel() and (link_ids.min() < 0 or link_ids.max() >= num_links):
            raise ValueError(f"link ids must be in [0, {num_links}) for robot {robot.name!r}")
        points_local = torch.as_tensor(points_local, dtype=torch.float32, device=kinematics.device)  # [P, 3]
        poses = kinematics.link_poses(kinematics.canonical_joints()[None])[0][link_ids]  # [P, 4, 4]
        points = (poses[:, :3, :3] @ points_local[:, :, None]).squeeze(-1) + poses[:, :3, 3]  # [P, 3]
        gaussians = CanonicalGaussians.from_points(
            points,
            torch.as_tensor(colors, dtype=torch.float32),
            link_ids,
            sh_degree=config.sh_degree,
            init_opacity=config.init_opacity,
            scale_factor=config.init_scale_factor,
        )
        return cls(robot, gaussians, config)

    # --- properties ------------------------------------------------------------------------------------------

    @property
    def joint_spec(self):
        """The robot's `JointSpec`: names, limits, normalize/denormalize."""
        return self.kinematics.joint_spec

    @property
    def link_names(self) -> list[str]:
        return self.kinematics.link_names

    @property
    def device(self) -> torch.device:
        return self.canonical_link_poses.device

    # --- posing and rendering --------------------------------------------------------------------------------

    def check_joints(self, joints: Tensor | np.ndarray) -> Tensor:
        """Validate pose vectors [B, J] and apply the joint-limit policy. Returns a float tensor [B, J]."""
        joints = torch.as_tensor(joints, dtype=torch.float32, device=self.device)
        if joints.ndim != 2:
            raise ValueError(f"joints must be [B, J] (J = {self.joint_spec.dof}), got shape {tuple(joints.shape)}")
        self.joint_spec.check(joints)
        with torch.no_grad():
            outside = self.joint_limited & (
                (joints < self.joint_lower - LIMIT_TOLERANCE) | (joints > self.joint_upper + LIMIT_TOLERANCE)
            )  # [B, J]
        if outside.any():
            names = [n for n, bad in zip(self.joint_spec.names, outside.any(0).tolist()) if bad]
            message = f"joints outside their limits for robot {self.robot.name!r}: {', '.join(names)}"
            if self.config.joint_limits == "error":
                raise ValueError(message)
            warnings.warn(message + " (clamped)", stacklevel=3)
        return torch.where(self.joint_limited, joints.clamp(self.joint_lower, self.joint_upper), joints)

    def set_field_dtype(self, dtype: str) -> None:
        """Precision of the skinning and appearance MLPs' products: "float32" (default) or "bfloat16" (~3x faster
        MLPs on CPUs with native bf16, `drrobot.nn.resolve_field_dtype`; outputs to ~3 significant digits). A run-time
        setting: not saved in checkpoints."""
        matmul_precision(dtype, self.device)  # validates the name
        for field_ in (self.skinning, self.appearance):
            if field_ is not None:
                field_.matmul_dtype = dtype

    def skinning_weights(self) -> Tensor:
        """Skinning weights [N, L] of the current canonical Gaussians."""
        return self.skinning(self.gaussians.means, self.gaussians.link_ids)

    def skinning_transforms(self, link_poses: Tensor, weights: Tensor):
        """The rigid motions [B, M] (canonical -> pose) of M points with skinning `weights` [M, L] when the links
        are at `link_poses` [B, L, 4, 4]: each point's blend of its links' motions (implicit LBS)."""
        return blend_transforms(weights, relative_transforms(link_poses, self.canonical_link_poses))

    def pose_gaussians(
        self,
        joints: Tensor,
        base_pose: Tensor | None = None,
        skinning_weights: Tensor | None = None,
        appearance: bool = True,
    ) -> PosedGaussians:
        """Gaussians at poses `joints` [B, J] (floating base: `base_pose` [B, 7] xyz + wxyz or None).
        `skinning_weights` [N, L]: `self.skinning_weights()` if already computed (saves evaluating the field).
        `appearance=False` skips the appearance field (faster; the canonical Gaussians' look at every pose)."""
        joints = self.check_joints(joints)  # [B, J]
        g = self.gaussians
        link_poses = self.kinematics.link_poses(joints, base_pose)  # [B, L, 4, 4]
        weights = self.skinning_weights() if skinning_weights is None else skinning_weights  # [N, L]
        sh = g.colors_sh()  # [N, K, 3]
        log_scales, opacity_logits = g.scales, g.opacities  # [N, 3], [N]
        if self.appearance is not None and appearance:
            blend = self.skinning_transforms(link_poses, weights)  # [B, N]
            means = blend.apply_points(g.means)  # [B, N, 3]
            delta = self.appearance(g.means, means, self.joint_spec.normalize(joints))
            log_scales = log_scales + delta.scales  # [B, N, 3]
            opacity_logits = opacity_logits + delta.opacities  # [B, N]
            quats = blend.apply_quats(g.quats + delta.quats)  # [B, N, 4]
            sh_rest = g.shN + delta.shN if delta.shN is not None else g.shN.expand(len(joints), *g.shN.shape)
            sh = torch.cat([g.sh0 + delta.sh0, sh_rest], dim=2)  # [B, N, K, 3]
        else:  # one fused kernel where it applies (a fit: nothing but the pose takes gradients)
            means, quats = skin_gaussians(weights, relative_transforms(link_poses, self.canonical_link_poses),
                                          g.means, g.quats)  # fmt: skip
        B = len(joints)
        return PosedGaussians(
            means=means,
            quats=quats,
            scales=log_scales.exp().expand(B, -1, -1),
            opacities=torch.sigmoid(opacity_logits).expand(B, -1),
            sh=sh.expand(B, *sh.shape[-3:]),
            weights=weights,
            link_poses=link_poses,
        )

    def render(
        self,
        joints: Tensor,  # [B, J]
        viewmats: Tensor,  # [B, C, 4, 4] world->camera (OpenCV)
        Ks: Tensor,  # [B, C, 3, 3]
        width: int,
        height: int,
        background: Tensor | None = None,  # [B, C, 3], [3] or anything broadcastable to [B, C, 3]; None: black
        base_pose: Tensor | None = None,  # [B, 7] floating-base robots only
        sh_degree: int | None = None,  # active SH degree (<= config.sh_degree); None: all
        render_mode: str = "RGB",  # "RGB" or "RGB+ED" (adds expected depth)
        features: Tensor | None = None,  # [N, F] or [B, N, F] per-Gaussian values to render too (e.g. weights)
        skinning_weights: Tensor | None = None,  # [N, L] `self.skinning_weights()` if already computed
        appearance: bool = True,  # False: skip the appearance field (faster, see `pose_gaussians`)
        gaussian_mask: Tensor | None = None,  # [N] bool: render only these Gaussians (means2d, radii: [B, C, M, 2])
        **rasterize_kwargs,  # near_plane, far_plane, backend, ... (eps2d, rasterize_mode: the config's)
    ) -> RenderOutput:
        """Render B poses, each from its C cameras; differentiable w.r.t. joints, base pose, cameras, parameters.

        `features` are alpha-composited like colours (e.g. `posed.weights` gives each pixel's link mixture);
        the SH colours are then evaluated here and rasterized with them in one pass."""
        if render_mode not in ("RGB", "RGB+ED"):
            raise ValueError(f"render_mode must be 'RGB' or 'RGB+ED', got {render_mode!r}")
        posed = self.pose_gaussians(joints, base_pose, skinning_weights, appearance)
        if gaussian_mask is not None:
            posed = _select_gaussians(posed, gaussian_mask)
            features = None if features is None else features[..., gaussian_mask, :]
        B = posed.means.shape[0]
        if viewmats.shape[:1] != (B,) or viewmats.shape[-2:] != (4, 4) or viewmats.ndim != 4:
            raise ValueError(f"viewmats must be [B={B}, C, 4, 4], got {tuple(viewmats.shape)}")
        C = viewmats.shape[1]
        if tuple(Ks.shape) != (B, C, 3, 3):
            raise ValueError(f"Ks must be [B={B}, C={C}, 3, 3], got {tuple(Ks.shape)}")
        degree = self.config.sh_degree if sh_degree is None else sh_degree
        if not 0 <= degree <= self.config.sh_degree:
            raise ValueError(f"sh_degree must be in [0, {self.config.sh_degree}], got {sh_degree}")
        sh = posed.sh[:, :, : (degree + 1) ** 2]  # [B, N, K', 3]
        backgrounds = None if background is None else _broadcast("background", background, (B, C, 3), self.device)
        F = 0 if features is None else features.shape[-1]
        if features is not None:
            N = posed.means.shape[1]
            if features.ndim not in (2, 3) or features.shape[-2] != N:
                raise ValueError(f"features must be [N={N}, F] or [B={B}, N={N}, F], got {tuple(features.shape)}")
            features = _broadcast("features", features, (B, N, F), features.device)  # [B, N, F]
        outputs = []
        for b in range(B):
            colors, colors_degree, bg = _with_features(
                posed.means[b], sh[b], viewmats[b], degree, None if features is None else features[b],
                None if backgrounds is None else backgrounds[b],
            )  # fmt: skip
            outputs.append(rasterize(
                posed.means[b], posed.quats[b], posed.scales[b], posed.opacities[b], colors, viewmats[b], Ks[b],
                width, height, sh_degree=colors_degree, render_mode=render_mode, backgrounds=bg,
                **self._rasterize_settings(rasterize_kwargs),
            ))  # fmt: skip
        colors = torch.stack([o[0] for o in outputs])  # [B, C, H, W, 3 + F (+1)]
        metas = [o[2] for o in outputs]
        return RenderOutput(
            images=colors[..., :3],
            alphas=torch.stack([o[1] for o in outputs]),
            depths=colors[..., 3 + F :] if render_mode == "RGB+ED" else None,
            features=colors[..., 3 : 3 + F] if features is not None else None,
            means2d=torch.stack([m["means2d"] for m in metas]),
            radii=torch.stack([m["radii"] for m in metas]),
            posed=posed,
            metas=metas,
        )

    def render_canonical(
        self,
        viewmats: Tensor,  # [C, 4, 4] world->camera (OpenCV)
        Ks: Tensor,  # [C, 3, 3]
        width: int,
        height: int,
        background: Tensor | None = None,  # [C, 3] or [3]; None: black
        sh_degree: int | None = None,
        features: Tensor | None = None,  # [N, F] per-Gaussian values to render too (background 0)
        **rasterize_kwargs,
    ) -> tuple[Tensor, Tensor, dict]:
        """The canonical Gaussians as they are (no skinning or appearance field: the canonical pose, where both
        are the identity at initialisation). Returns rasterize's (colors [C, H, W, 3 (+ F)], alphas, meta)."""
        g = self.gaussians
        degree = self.config.sh_degree if sh_degree is None else sh_degree
        C = viewmats.shape[0]
        backgrounds = None if background is None else torch.as_tensor(background, device=self.device).broadcast_to(C, 3)
        colors, degree, backgrounds = _with_features(
            g.means, g.colors_sh()[:, : (degree + 1) ** 2], viewmats, degree, features, backgrounds
        )
        return rasterize(
            g.means, g.quats, g.scales.exp(), torch.sigmoid(g.opacities), colors, viewmats, Ks, width, height,
            sh_degree=degree, backgrounds=backgrounds, **self._rasterize_settings(rasterize_kwargs),
        )  # fmt: skip

    def _rasterize_settings(self, overrides: dict) -> dict:
        """`rasterize` keyword arguments: the model's eps2d and rasterize_mode unless a caller overrides them."""
        return {"eps2d": self.config.eps2d, "rasterize_mode": self.config.rasterize_mode, **overrides}

    @torch.no_grad()
    def export_ply(self, path: str | Path, joints: Tensor | None = None, base_pose: Tensor | None = None) -> Path:
        """Write the Gaussians at one pose (joints [J] or [1, J]; None: the canonical pose) as a standard 3DGS
        `.ply` (see `drrobot.ply`), the appearance field's deformation at that pose baked in: rasterized with
        the model's filter (`rasterize_mode`, `eps2d`) the file renders exactly as `render` does. Common 3DGS
        viewers use the classic filter (eps2d 0.3), which widens sub-pixel Gaussians: see BENCHMARKS.md for
        what that changes at each resolution."""
        joints = self.canonical_joints if joints is None else torch.as_tensor(joints, device=self.device)
        base_pose = None if base_pose is None else torch.as_tensor(base_pose, device=self.device).reshape(1, 7)
        with torch.no_grad():
            posed = self.pose_gaussians(joints.reshape(1, -1), base_pose)
        return export_ply(path, posed.means[0], posed.quats[0], posed.scales[0], posed.opacities[0], posed.sh[0])

    # --- devices ---------------------------------------------------------------------------------------------

    def _apply(self, fn, recurse=True):
        """`.to(device)` / `.cuda()` also move the (non-Module) kinematics."""
        super()._apply(fn, recurse)
        if self.kinematics.device != self.device:
            self.kinematics = RobotKinematics.from_robot(self.robot, device=self.device)
        return self


def _select_gaussians(posed: PosedGaussians, mask: Tensor) -> PosedGaussians:
    """The Gaussians `mask` [N] bool of posed Gaussians (weights and link poses kept whole)."""
    return dataclasses.replace(
        posed, means=posed.means[:, mask], quats=posed.quats[:, mask], scales=posed.scales[:, mask],
        opacities=posed.opacities[:, mask], sh=posed.sh[:, mask],
    )  # fmt: skip


def _with_features(
    means: Tensor,  # [N, 3]
    sh: Tensor,  # [N, K, 3] SH coefficients
    viewmats: Tensor,  # [C, 4, 4]
    sh_degree: int,
    features: Tensor | None,  # [N, F]
    backgrounds: Tensor | None,  # [C, 3]
) -> tuple[Tensor, int | None, Tensor | None]:
    """`rasterize`'s colours, sh_degree and backgrounds for SH colours plus per-Gaussian `features`: without
    features the SH coefficients as they are; with them the SH evaluated here per camera, [C, N, 3 + F], and
    the backgrounds padded with 0 for the feature channels."""
    if features is None:
        return sh, sh_degree, backgrounds
    C = viewmats.shape[0]
    colors = torch.cat([sh_colors(means, sh, viewmats, sh_degree), features.expand(C, -1, -1)], dim=-1)
    if backgrounds is not None:
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, features.shape[-1])], dim=-1)  # [C, 3 + F]
    return colors, None, backgrounds


def project_points(
    points: Tensor, viewmats: Tensor, Ks: Tensor, near_plane: float = 1e-6
) -> tuple[Tensor, Tensor, Tensor]:
    """Pinhole projection, gsplat conventions (pixel centres at +0.5, so it matches rasterize's means2d).

    points [B, N, 3] world, viewmats [B, C, 4, 4] world->camera, Ks [B, C, 3, 3].
    Returns pixel coordinates [B, C, N, 2], camera-space depths [B, C, N] and `in_front` [B, C, N] bool
    (depth > near_plane). Points behind the camera project through a clamped depth (finite, but meaningless:
    mask them with `in_front`). Shapes are checked (ValueError).
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3], got {tuple(points.shape)}")
    B = points.shape[0]
    if viewmats.ndim != 4 or viewmats.shape[0] != B or viewmats.shape[-2:] != (4, 4):
        raise ValueError(f"viewmats must be [B={B}, C, 4, 4], got {tuple(viewmats.shape)}")
    if tuple(Ks.shape) != (*viewmats.shape[:2], 3, 3):
        raise ValueError(f"Ks must be [B={B}, C={viewmats.shape[1]}, 3, 3], got {tuple(Ks.shape)}")
    cam = torch.einsum("bcij,bnj->bcni", viewmats[:, :, :3, :3], points) + viewmats[:, :, None, :3, 3]  # [B, C, N, 3]
    depth = cam[..., 2]  # [B, C, N]
    in_front = depth > near_plane
    pix = torch.einsum("bcij,bcnj->bcni", Ks, cam)  # [B, C, N, 3]
    return pix[..., :2] / depth.clamp_min(near_plane)[..., None], depth, in_front
