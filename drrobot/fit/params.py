"""What a fit optimises: B hypotheses of joints, floating base, camera corrections and a colour correction.

Joints with limits live in an unconstrained variable `z`, mapped into the limits by `denormalize(tanh(z))`, so a
step never leaves the limits and gradients never die at a clamp; continuous joints are optimised as they are.
Cameras are reference viewmats corrected by a learnable `CameraDelta` (one per hypothesis, or one shared by all
of them, e.g. the frames of a static-camera video) and optionally a learnable focal scale.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from drrobot.fit.cameras import CameraDelta
from drrobot.joints import JointSpec

_TANH_EDGE = 0.98  # initial joints are pulled this far inside their limits (tanh saturates at the limits)


@dataclasses.dataclass
class LearningRates:
    """Adam learning rates per parameter group (camera translation in metres per step)."""

    joints: float = 0.05
    """Joints in the unconstrained tanh space (continuous joints: radians)."""
    base: float = 0.01
    """Floating base position (metres) and quaternion."""
    rotation: float = 0.01
    """Camera rotation (6D representation)."""
    shift: float = 0.01
    """Camera shift: image-plane offset (fraction of the focal length) and log depth (see `CameraDelta`)."""
    focal: float = 0.01
    """Log focal-length scale (only when the focal length is optimised)."""
    color: float = 0.02
    """Per-camera colour gain (log) and bias of the rendered robot."""


class PoseParameters(nn.Module):
    """B hypotheses x C cameras of everything a fit can change."""

    def __init__(
        self,
        joint_spec: JointSpec,
        joints: Tensor,  # [B, J] initial joints
        viewmats: Tensor,  # [B, C, 4, 4] reference cameras
        Ks: Tensor,  # [B, C, 3, 3] for images of `image_size`
        image_size: tuple[int, int],  # (width, height) the Ks are for
        pivots: Tensor | None = None,  # [B, 3] world points the camera corrections rotate about
        base_pose: Tensor | None = None,  # [B, 7] floating base, xyz + wxyz
        optimize_joints: bool = True,
        optimize_camera: bool = True,
        optimize_focal: bool = False,
        shared_camera: bool = False,
        color_correction: bool = True,
    ):
        super().__init__()
        B, J = joints.shape
        if joints.shape[1] != joint_spec.dof:
            raise ValueError(f"joints must be [B, {joint_spec.dof}], got {tuple(joints.shape)}")
        if viewmats.ndim != 4 or viewmats.shape[0] != B or tuple(Ks.shape) != (*viewmats.shape[:2], 3, 3):
            raise ValueError(f"viewmats must be [B={B}, C, 4, 4] and Ks [B, C, 3, 3], got {tuple(viewmats.shape)}, {tuple(Ks.shape)}")
        self.spec = joint_spec
        self.image_size = (int(image_size[0]), int(image_size[1]))
        device = joints.device
        self.register_buffer("limited", torch.as_tensor(~joint_spec.continuous, device=device))  # [J] bool
        self.z = nn.Parameter(self._to_z(joints.detach().float()), requires_grad=optimize_joints)  # [B, J]
        self.register_buffer("reference_viewmats", viewmats.detach().float())
        self.register_buffer("reference_Ks", Ks.detach().float())
        self.camera = (
            CameraDelta(1 if shared_camera else B, None if pivots is None else pivots[:1] if shared_camera else pivots)
            if optimize_camera
            else None
        )
        self.log_focal = nn.Parameter(torch.zeros(1 if shared_camera else B, 1), requires_grad=optimize_focal)
        self.base = None if base_pose is None else nn.Parameter(base_pose.detach().float().clone())  # [B, 7]
        C = viewmats.shape[1]
        self.color_gain = nn.Parameter(torch.zeros(B, C, 3), requires_grad=color_correction)  # log gain
        self.color_bias = nn.Parameter(torch.zeros(B, C, 3), requires_grad=color_correction)
        self.to(device)

    @property
    def batch(self) -> int:
        return self.z.shape[0]

    def joints(self) -> Tensor:
        """[B, J] radians / metres, inside the limits."""
        return torch.where(self.limited, self.spec.denormalize(torch.tanh(self.z)), self.z)

    def base_pose(self) -> Tensor | None:
        """[B, 7] or None (fixed base)."""
        return self.base

    def viewmats(self) -> Tensor:
        """[B, C, 4, 4]."""
        if self.camera is None:
            return self.reference_viewmats
        corrected = self.camera(self.reference_viewmats[: self.camera.rotation.shape[0]])
        return corrected.expand_as(self.reference_viewmats) if corrected.shape[0] == 1 else corrected

    def Ks(self) -> Tensor:
        """[B, C, 3, 3] (focal lengths scaled when optimised)."""
        scale = torch.cat([self.log_focal.exp(), self.log_focal.exp(), torch.ones_like(self.log_focal)], -1)  # [B', 3]
        return self.reference_Ks * scale[:, None, :, None]

    def param_groups(self, lr: LearningRates) -> list[dict]:
        """Adam parameter groups of the parameters being optimised."""
        groups = [("joints", [self.z], lr.joints), ("focal", [self.log_focal], lr.focal),
                  ("color", [self.color_gain, self.color_bias], lr.color)]  # fmt: skip
        if self.camera is not None:
            groups += [("rotation", [self.camera.rotation], lr.rotation), ("shift", [self.camera.shift], lr.shift)]
        if self.base is not None:
            groups.append(("base", [self.base], lr.base))
        return [{"name": n, "params": [p for p in ps if p.requires_grad], "lr": r} for n, ps, r in groups
                if any(p.requires_grad for p in ps)]  # fmt: skip

    def select(self, index: Tensor | list[int]) -> dict:
        """The current values of hypotheses `index` (joints, viewmats, Ks, base pose), detached."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.z.device)
        with torch.no_grad():
            base = self.base_pose()
            return {
                "joints": self.joints()[index],
                "viewmats": self.viewmats()[index],
                "Ks": self.Ks().expand_as(self.reference_Ks)[index],
                "base_pose": None if base is None else base[index],
            }

    def _to_z(self, joints: Tensor) -> Tensor:
        normalized = self.spec.normalize(joints).clamp(-_TANH_EDGE, _TANH_EDGE)
        return torch.where(self.limited, torch.atanh(normalized), joints)
