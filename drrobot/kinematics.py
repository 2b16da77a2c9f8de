"""Batched, differentiable forward kinematics of every MuJoCo body, built on pytorch_kinematics.

>>> kin = RobotKinematics.from_robot("panda")
>>> poses = kin.link_poses(torch.zeros(4, kin.joint_spec.dof))   # [4, L, 4, 4] world poses, L = len(kin.link_names)

The pytorch_kinematics `Chain` is built from the compiled `mujoco.MjModel` (not with its MJCF parser, which
re-parses the XML without the file's directory, fails on mujoco >= 3 joint types, puts a body's frame at its
joint anchor when the joint has a `pos`, ignores joint `ref`, and supports neither free nor multiple joints per
body). Each body becomes one frame named `body<id>`; a body with joints gets one frame per joint before it,
reproducing MuJoCo's convention: body = parent * offset * prod_k [T(anchor_k) * motion_k(q_k - qpos0_k) * T(-anchor_k)].
A floating (free-joint) body's frame starts at the identity and its subtree is moved by the base pose.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytorch_kinematics as pk
import torch

from drrobot.joints import JointSpec
from drrobot.robots import RobotDescription, link_names, load_robot

_HINGE, _FREE = int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_FREE)


class RobotKinematics:
    """World poses of the robot's links (MuJoCo bodies minus the world) from pose vectors and a base pose."""

    def __init__(self, model: mujoco.MjModel, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.joint_spec = JointSpec.from_mj_model(model)
        self.link_names: list[str] = link_names(model)
        self.dtype, self.device = dtype, torch.device(device or "cpu")
        self.chain = _build_chain(model).to(dtype=dtype, device=self.device)
        names = self.chain.get_joint_parameter_names()
        joint_ids = [j for j in range(model.njnt) if int(model.jnt_type[j]) != _FREE]
        position = {f"joint{j}": i for i, j in enumerate(joint_ids)}  # pk joint name -> index into full joints
        self._chain_order = torch.tensor([position[n] for n in names], dtype=torch.long, device=self.device)  # [N]
        self._joint_qpos0 = self._tensor(self.joint_spec.joint_qpos0)  # [N]
        frames = [f"body{b}" for b in range(1, model.nbody)]
        self._link_frames = self.chain.get_frame_indices(*frames).to(self.device)  # [L]
        floating = _floating_subtree(model)  # [nbody] bool
        self._floating_links = torch.as_tensor(floating[1:], device=self.device)  # [L] bool
        self._default_base = self._tensor(self.joint_spec.default_base_pose()) if self.joint_spec.floating_base else None  # [7]

    @classmethod
    def from_robot(cls, robot: RobotDescription | str, device=None, dtype: torch.dtype = torch.float32) -> "RobotKinematics":
        """Kinematics of a robot given by short name, file path or `RobotDescription`."""
        description = robot if isinstance(robot, RobotDescription) else load_robot(robot)
        return cls(description.mj_model(), device=device, dtype=dtype)

    def link_poses(self, joints, base_pose=None) -> torch.Tensor:
        """World poses [..., L, 4, 4] of all links.

        joints: [..., J] pose vectors (`joint_spec.names` order), radians / metres.
        base_pose: floating-base robots only; [..., 7] xyz + wxyz quaternion or [..., 4, 4]; None: the model's qpos0.
        Differentiable w.r.t. joints and base_pose.
        """
        joints = torch.as_tensor(joints, dtype=self.dtype, device=self.device)
        self.joint_spec.check(joints)
        batch = joints.shape[:-1]
        full = self.joint_spec.full_joints(joints.reshape(-1, self.joint_spec.dof))  # [B, N]
        theta = (full - self._joint_qpos0)[:, self._chain_order]  # [B, N] in chain order, relative to qpos0
        frames = self.chain.forward_kinematics_tensor(theta)  # [F, B, 4, 4]
        poses = frames[self._link_frames].transpose(0, 1)  # [B, L, 4, 4]
        if self.joint_spec.floating_base:
            base = self._base_matrix(base_pose, batch).reshape(-1, 4, 4)  # [B, 4, 4]
            moved = torch.einsum("bij,bljk->blik", base, poses)  # [B, L, 4, 4]; einsum: one matmul per pose, not per link
            poses = torch.where(self._floating_links[:, None, None], moved, poses)
        elif base_pose is not None:
            raise ValueError("this robot has a fixed base: it takes no base_pose")
        return poses.reshape(*batch, len(self.link_names), 4, 4)

    def canonical_joints(self) -> torch.Tensor:
        """The canonical pose vector [J] (qpos0 clipped into the limits)."""
        return self._tensor(self.joint_spec.canonical())

    def _base_matrix(self, base_pose, batch: torch.Size) -> torch.Tensor:
        """Base pose as [..., 4, 4] broadcast to `batch`."""
        if base_pose is None:
            base_pose = self._default_base
        base_pose = torch.as_tensor(base_pose, dtype=self.dtype, device=self.device)
        if base_pose.shape[-1:] == (7,):
            base_pose = pose7_to_matrix(base_pose)
        elif base_pose.shape[-2:] != (4, 4):
            raise ValueError(f"base_pose must be [..., 7] (xyz + wxyz) or [..., 4, 4], got shape {tuple(base_pose.shape)}")
        if not torch.isfinite(base_pose.detach()).all():
            raise ValueError("base_pose has non-finite values")
        return base_pose.expand(*batch, 4, 4)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)


def pose7_to_matrix(pose: torch.Tensor) -> torch.Tensor:
    """xyz + wxyz quaternion [..., 7] (quaternion normalised, as MuJoCo does) -> homogeneous matrix [..., 4, 4]."""
    rotation = pk.transforms.quaternion_to_matrix(torch.nn.functional.normalize(pose[..., 3:], dim=-1))  # [..., 3, 3]
    top = torch.cat([rotation, pose[..., :3, None]], -1)  # [..., 3, 4]
    bottom = torch.zeros_like(top[..., :1, :])  # [..., 1, 4]
    bottom[..., 3] = 1.0
    return torch.cat([top, bottom], -2)


def _floating_subtree(model: mujoco.MjModel) -> np.ndarray:
    """[nbody] bool: bodies moved by the free joint (the floating body and its descendants)."""
    moved = np.zeros(model.nbody, dtype=bool)
    for j in range(model.njnt):
        if int(model.jnt_type[j]) == _FREE:
            moved[model.jnt_bodyid[j]] = True
    for b in range(1, model.nbody):  # parents precede children in MuJoCo body order
        moved[b] |= moved[model.body_parentid[b]]
    return moved


def _build_chain(model: mujoco.MjModel) -> pk.Chain:
    """A float64 pk.Chain rooted at the world, with a frame `body<id>` per body and `joint<id>` per joint."""
    children: dict[int, list[int]] = {b: [] for b in range(model.nbody)}
    for b in range(1, model.nbody):
        children[int(model.body_parentid[b])].append(b)

    def body_frames(b: int) -> pk.Frame:
        offset = np.eye(4) if b == 0 or _has_free_joint(model, b) else _matrix(model.body_pos[b], model.body_quat[b])
        joints = [j for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]) if int(model.jnt_type[j]) != _FREE]
        chain: list[pk.Frame] = []
        for k, j in enumerate(joints):
            anchor = model.jnt_pos[j]
            centred_last = k == len(joints) - 1 and not anchor.any()  # the joint frame is the body frame itself
            name = f"body{b}" if centred_last else f"joint{j}"
            kind = "revolute" if int(model.jnt_type[j]) == _HINGE else "prismatic"
            joint = pk.frame.Joint(f"joint{j}", joint_type=kind, axis=model.jnt_axis[j].copy(), dtype=torch.float64)
            chain.append(_frame(name, offset @ _matrix(anchor), joint))
            offset = _matrix(-anchor)
        if not chain or chain[-1].name != f"body{b}":
            chain.append(_frame(f"body{b}", offset, pk.frame.Joint(f"body{b}_fixed", dtype=torch.float64)))
        for parent, child in zip(chain, chain[1:]):
            parent.children = [child]
        chain[-1].children = [body_frames(c) for c in children[b]]
        return chain[0]

    return pk.Chain(body_frames(0), dtype=torch.float64)


def _has_free_joint(model: mujoco.MjModel, b: int) -> bool:
    return any(int(model.jnt_type[j]) == _FREE for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]))


def _frame(name: str, offset: np.ndarray, joint: pk.frame.Joint) -> pk.Frame:
    link = pk.frame.Link(name, offset=pk.Transform3d(matrix=torch.as_tensor(offset, dtype=torch.float64), dtype=torch.float64))
    return pk.Frame(name, link=link, joint=joint)


def _matrix(pos: np.ndarray, quat: np.ndarray | None = None) -> np.ndarray:
    """Homogeneous transform [4, 4] from a translation [3] and an optional wxyz quaternion [4]."""
    out = np.eye(4)
    if quat is not None:
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, quat)
        out[:3, :3] = rotation.reshape(3, 3)
    out[:3, 3] = pos
    return out
