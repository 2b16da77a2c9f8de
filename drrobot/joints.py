"""The robot's pose vector: which joints are independent, their limits, and how to turn them into MuJoCo qpos.

A pose vector holds the independent hinge/slide joints in MuJoCo joint order. Excluded are:

- the free joint of a floating base: its pose is a separate `base_pose` input, xyz + wxyz quaternion [..., 7];
- dependent joints, derived from independent ones by couplings of the form
  `q[dep] - q0[dep] = poly(q[src] - q0[src])` (quartic, MuJoCo `polycoef` convention, q0 = `qpos0`).

Couplings come from three places:

- MuJoCo joint equalities `<joint joint1=A joint2=B polycoef=.../>` (URDF `<mimic>` tags arrive as these too:
  MuJoCo's URDF importer converts them). `joint1` is the dependent joint, as in MuJoCo, with one exception:
  a *linear* coupling whose `joint1` is driven directly by an actuator and whose `joint2` is not is inverted,
  so the actuated joint is the independent one (vx300s: `left_finger` independent, `right_finger` derived).
  An equality without `joint2` holds `joint1` at `q0 + polycoef[0]`.
- Closed loops from `<connect>` equalities (xArm7 four-bar gripper): the loop's joints that no actuator or joint
  equality drives ("followers") are fitted, at load time, as quartics of the loop's single driven joint by
  solving the loop closure numerically over the driver's range. Loops with no or several driven joints are
  left alone (their joints stay independent) with a warning.
- Tendons alone (Shadow Hand) couple nothing: those joints are independent.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Union

import mujoco
import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]

UNLIMITED_SLIDE_RANGE = (-1.0, 1.0)
"""Sampling/normalisation range (metres) assumed for a slide joint without limits."""

# MuJoCo enum values as plain ints: numpy ints from model arrays do not compare reliably with mujoco's enums.
_HINGE, _SLIDE, _BALL, _FREE = (
    int(t) for t in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_BALL, mujoco.mjtJoint.mjJNT_FREE)
)
_LOOP_SAMPLES = 33  # driver values at which a closed loop is solved before fitting its followers
_LOOP_TOL = 1e-10  # metres: loop closure residual accepted by the solver
_LOOP_FIT_EXACT = 1e-7  # radians / metres: a fit this close to the solved loop is exact
_LOOP_FIT_TOL = 1e-3  # radians / metres: warn when a follower's quartic misses the solved loop by more


@dataclasses.dataclass(frozen=True)
class Coupling:
    """A dependent joint: `q[dependent] - q0[dependent] = sum_k coef[k] * (q[source] - q0[source]) ** k`."""

    dependent: int  # index into JointSpec.joint_names
    source: int | None  # index into JointSpec.joint_names; None: held at q0 + coef[0]
    coef: tuple[float, ...]  # polynomial coefficients, lowest degree first

    def evaluate(self, x: Array) -> Array:
        """The polynomial at `x` (Horner; numpy or torch, any shape)."""
        degree = max((k for k, c in enumerate(self.coef) if c != 0.0), default=0)
        value = self.coef[degree] + 0.0 * x
        for c in reversed(self.coef[:degree]):
            value = value * x + c
        return value

    def inverted(self) -> "Coupling | None":
        """The same tie read the other way (the source as the dependent), when it is linear with a source; else None."""
        if self.source is None or len(self.coef) < 2 or self.coef[1] == 0.0 or any(self.coef[2:]):
            return None
        return Coupling(self.source, self.dependent, (-self.coef[0] / self.coef[1], 1.0 / self.coef[1], 0.0, 0.0, 0.0))


@dataclasses.dataclass(frozen=True, eq=False)
class JointSpec:
    """The robot's pose vector: independent joints in MuJoCo joint order (free joints and dependent joints excluded)."""

    names: tuple[str, ...]  # independent joint names, [J]
    lower: np.ndarray  # [J] radians / metres (continuous joints: -pi)
    upper: np.ndarray  # [J]
    continuous: np.ndarray  # [J] bool, unlimited revolute joints
    floating_base: bool  # robot has a free joint at its root
    joint_names: tuple[str, ...]  # every hinge/slide joint, MuJoCo order, [N]
    joint_qposadr: np.ndarray  # [N] int, qpos address of each hinge/slide joint
    joint_qpos0: np.ndarray  # [N] reference position (MuJoCo qpos0) of each hinge/slide joint
    independent: np.ndarray  # [J] int, index into joint_names of each pose-vector entry
    couplings: tuple[Coupling, ...]  # dependent joints, in evaluation order
    qpos0: np.ndarray  # [nq] the model's qpos0
    base_qposadr: int | None  # qpos address of the free joint (xyz + wxyz), None for a fixed base

    @classmethod
    def from_mj_model(cls, model: mujoco.MjModel) -> "JointSpec":
        """The pose vector of a compiled model; couplings per the module docstring. Ball joints are rejected."""
        for j in range(model.njnt):
            if int(model.jnt_type[j]) == _BALL:
                raise ValueError(f"ball joint {_joint_name(model, j)!r} is not supported (hinge, slide, free only)")
        joints = [j for j in range(model.njnt) if int(model.jnt_type[j]) in (_HINGE, _SLIDE)]
        base_qposadr = _free_joint_qposadr(model)
        index = {j: i for i, j in enumerate(joints)}
        couplings = _joint_equality_couplings(model, index)
        couplings += _loop_couplings(model, index, couplings)
        couplings = _evaluation_order(couplings, [_joint_name(model, j) for j in joints])
        dependent = {c.dependent for c in couplings}
        independent = np.array([i for i in range(len(joints)) if i not in dependent], dtype=np.int64)
        ids = [joints[i] for i in independent]
        hinge = np.array([int(model.jnt_type[j]) == _HINGE for j in ids], dtype=bool)
        limited = np.array([bool(model.jnt_limited[j]) for j in ids], dtype=bool)
        ranges = np.array([model.jnt_range[j] for j in ids], dtype=np.float64).reshape(-1, 2)
        unlimited = np.where(hinge[:, None], [-math.pi, math.pi], UNLIMITED_SLIDE_RANGE)
        ranges = np.where(limited[:, None], ranges, unlimited)
        qposadr = np.array([model.jnt_qposadr[j] for j in joints], dtype=np.int64)
        return cls(
            names=tuple(_joint_name(model, j) for j in ids),
            lower=ranges[:, 0].copy(),
            upper=ranges[:, 1].copy(),
            continuous=hinge & ~limited,
            floating_base=base_qposadr is not None,
            joint_names=tuple(_joint_name(model, j) for j in joints),
            joint_qposadr=qposadr,
            joint_qpos0=model.qpos0[qposadr].copy(),
            independent=independent,
            couplings=tuple(couplings),
            qpos0=model.qpos0.copy(),
            base_qposadr=base_qposadr,
        )

    @property
    def dof(self) -> int:
        """J, the length of the pose vector."""
        return len(self.names)

    @property
    def nq(self) -> int:
        return len(self.qpos0)

    def check(self, joints: Array) -> None:
        """Raise ValueError unless `joints` [..., J] has the right length and only finite entries."""
        shape = tuple(joints.shape)
        if not shape or shape[-1] != self.dof:
            raise ValueError(
                f"joint vector must have length {self.dof} ({', '.join(self.names) or 'no joints'}), got shape {shape}"
            )
        if isinstance(joints, torch.Tensor):
            joints = joints.detach()
            if bool(torch.isfinite(joints).all()):
                return
            joints = joints.cpu().numpy()
        finite = np.isfinite(joints).reshape(-1, self.dof).all(0)  # [J]
        if not finite.all():
            bad = [name for name, ok in zip(self.names, finite) if not ok]
            raise ValueError(f"joint vector has non-finite values for joint(s) {', '.join(bad)}")

    def full_joints(self, joints: Array) -> Array:
        """Every hinge/slide joint [..., N] from the pose vector [..., J], dependent joints derived (numpy or torch)."""
        columns: list = [None] * len(self.joint_names)
        for k, i in enumerate(self.independent):
            columns[i] = joints[..., k]
        for c in self.couplings:
            x = 0.0 * joints.sum(-1) if c.source is None else columns[c.source] - self.joint_qpos0[c.source]
            columns[c.dependent] = c.evaluate(x) + self.joint_qpos0[c.dependent]
        if not columns:
            return joints[..., :0]
        return torch.stack(columns, -1) if isinstance(joints, torch.Tensor) else np.stack(columns, -1)

    def to_qpos(self, joints: Array, base_pose: Array | None = None) -> np.ndarray:
        """MuJoCo qpos [..., nq] for pose vectors `joints` [..., J] and, for a floating base, `base_pose` [..., 7]
        (xyz + wxyz quaternion; None: the model's qpos0 base). Dependent joints are derived."""
        joints = _numpy(joints)
        self.check(joints)
        qpos = np.broadcast_to(self.qpos0, joints.shape[:-1] + (self.nq,)).copy()
        qpos[..., self.joint_qposadr] = self.full_joints(joints)
        if base_pose is not None:
            base_pose = self._check_base_pose(_numpy(base_pose))
            quat = base_pose[..., 3:] / np.linalg.norm(base_pose[..., 3:], axis=-1, keepdims=True)
            adr = self.base_qposadr
            qpos[..., adr : adr + 3] = base_pose[..., :3]
            qpos[..., adr + 3 : adr + 7] = quat
        return qpos

    def default_base_pose(self) -> np.ndarray:
        """The floating base's pose in qpos0, xyz + wxyz [7]."""
        self._require_floating_base()
        return self.qpos0[self.base_qposadr : self.base_qposadr + 7].copy()

    def _require_floating_base(self) -> None:
        if not self.floating_base:
            raise ValueError("this robot has a fixed base: it takes no base_pose")

    def _check_base_pose(self, base_pose: np.ndarray) -> np.ndarray:
        self._require_floating_base()
        valid = base_pose.shape[-1:] == (7,) and np.isfinite(base_pose).all()
        if not valid or (np.linalg.norm(base_pose[..., 3:], axis=-1) == 0).any():
            raise ValueError(
                f"base_pose must be finite xyz + non-zero wxyz quaternion [..., 7], got shape {base_pose.shape}"
            )
        return base_pose

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` pose vectors [n, J], uniform within the limits."""
        return rng.uniform(self.lower, self.upper, size=(n, self.dof))

    def canonical(self) -> np.ndarray:
        """The canonical pose [J]: qpos0 clipped into the limits."""
        return np.clip(self.joint_qpos0[self.independent], self.lower, self.upper)

    def normalize(self, joints: Array) -> Array:
        """Radians/metres [..., J] -> [-1, 1] over the limits (numpy or torch)."""
        lower, upper = self.limits_like(joints)
        return 2.0 * (joints - lower) / (upper - lower) - 1.0

    def denormalize(self, normalized: Array) -> Array:
        """[-1, 1] [..., J] -> radians/metres (numpy or torch)."""
        lower, upper = self.limits_like(normalized)
        return lower + (normalized + 1.0) * 0.5 * (upper - lower)

    def limits_like(self, x: Array) -> tuple[Array, Array]:
        """(lower, upper) [J] as x's kind: a torch tensor of x's dtype and device, or numpy."""
        if isinstance(x, torch.Tensor):
            return tuple(torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (self.lower, self.upper))
        return self.lower, self.upper


def _numpy(x: Array) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def _joint_name(model: mujoco.MjModel, j: int) -> str:
    return model.joint(j).name or f"joint{j}"


def _free_joint_qposadr(model: mujoco.MjModel) -> int | None:
    free = [j for j in range(model.njnt) if int(model.jnt_type[j]) == _FREE]
    if len(free) > 1:
        names = ", ".join(_joint_name(model, j) for j in free)
        raise ValueError(f"only one floating base is supported, found free joints {names}")
    if free and model.body_jntnum[model.jnt_bodyid[free[0]]] != 1:
        raise ValueError(f"the floating base body of free joint {_joint_name(model, free[0])!r} has other joints")
    return int(model.jnt_qposadr[free[0]]) if free else None


def _actuated_joints(model: mujoco.MjModel) -> set[int]:
    """Joints an actuator drives directly (joint transmission)."""
    direct = (int(mujoco.mjtTrn.mjTRN_JOINT), int(mujoco.mjtTrn.mjTRN_JOINTINPARENT))
    return {int(model.actuator_trnid[a, 0]) for a in range(model.nu) if int(model.actuator_trntype[a]) in direct}


def _tendon_driven_joints(model: mujoco.MjModel) -> set[int]:
    """Joints in a fixed tendon that an actuator drives."""
    tendon = int(mujoco.mjtTrn.mjTRN_TENDON)
    tendons = {int(model.actuator_trnid[a, 0]) for a in range(model.nu) if int(model.actuator_trntype[a]) == tendon}
    joints = set()
    for t in tendons:
        for w in range(model.tendon_adr[t], model.tendon_adr[t] + model.tendon_num[t]):
            if int(model.wrap_type[w]) == int(mujoco.mjtWrap.mjWRAP_JOINT):
                joints.add(int(model.wrap_objid[w]))
    return joints


def _active_equalities(model: mujoco.MjModel, eq_type: int) -> list[int]:
    return [e for e in range(model.neq) if int(model.eq_type[e]) == int(eq_type) and model.eq_active0[e]]


def _joint_equality_couplings(model: mujoco.MjModel, index: dict[int, int]) -> list[Coupling]:
    """Couplings from `<joint>` equalities (see the module docstring for which side is dependent)."""
    actuated = _actuated_joints(model)
    couplings = []
    for e in _active_equalities(model, mujoco.mjtEq.mjEQ_JOINT):
        joint1, joint2 = int(model.eq_obj1id[e]), int(model.eq_obj2id[e])
        coupling = Coupling(index[joint1], index[joint2] if joint2 >= 0 else None,
                            tuple(float(c) for c in model.eq_data[e, :5]))  # fmt: skip
        inverted = coupling.inverted()
        couplings.append(inverted if inverted and joint1 in actuated and joint2 not in actuated else coupling)
    return couplings


def _evaluation_order(couplings: list[Coupling], names: list[str]) -> list[Coupling]:
    """Sort couplings so every source is known before it is used; reject double definitions and cycles."""
    by_dependent: dict[int, Coupling] = {}
    for c in couplings:
        if c.dependent in by_dependent:
            raise ValueError(f"joint {names[c.dependent]!r} is the dependent side of more than one coupling")
        by_dependent[c.dependent] = c
    ordered: list[Coupling] = []
    done: set[int] = set()
    while len(ordered) < len(couplings):
        ready = [c for d, c in by_dependent.items() if d not in done and (c.source is None or c.source not in by_dependent or c.source in done)]
        if not ready:
            cycle = sorted(names[d] for d in by_dependent if d not in done)
            raise ValueError(f"joint couplings form a cycle among {', '.join(cycle)}")
        ordered += ready
        done.update(c.dependent for c in ready)
    return ordered


def _loop_couplings(model: mujoco.MjModel, index: dict[int, int], couplings: list[Coupling]) -> list[Coupling]:
    """Fit follower joints of `<connect>` closed loops as quartics of the loop's driven joint."""
    coupled = {c.dependent for c in couplings} | {c.source for c in couplings if c.source is not None}
    driven = _actuated_joints(model) | _tendon_driven_joints(model) | {j for j in index if index[j] in coupled}
    fitted: list[Coupling] = []
    for e in _active_equalities(model, mujoco.mjtEq.mjEQ_CONNECT):
        loop = _ConnectLoop(model, e)
        path = [j for j in loop.joints if j in index]
        drivers = [j for j in path if j in driven]
        followers = [j for j in path if j not in driven and index[j] not in {c.dependent for c in fitted}]
        if len(drivers) != 1 or not followers:
            warnings.warn(f"closed loop {loop.name}: {len(drivers)} driven joints, {len(followers)} followers; its joints stay independent")
            continue
        try:
            fitted += loop.fit(drivers[0], followers, index)
        except ValueError as err:
            warnings.warn(f"{err}; its joints stay independent")
    return fitted


class _ConnectLoop:
    """A `<connect>` equality: two points, one on each of two bodies (or sites), that must coincide."""

    def __init__(self, model: mujoco.MjModel, e: int):
        self.model, self.data = model, mujoco.MjData(model)
        self.name = model.eq(e).name or f"equality{e}"
        self.objects = (int(model.eq_obj1id[e]), int(model.eq_obj2id[e]))
        self.on_sites = int(model.eq_objtype[e]) == int(mujoco.mjtObj.mjOBJ_SITE)
        self.anchors = (model.eq_data[e, 0:3].copy(), model.eq_data[e, 3:6].copy())  # [3] each, in the body frames
        bodies = [int(model.site_bodyid[o]) if self.on_sites else o for o in self.objects]
        self.joints = _path_joints(model, *bodies)

    def residual(self, qpos: np.ndarray) -> np.ndarray:
        """The gap [3] between the two points at `qpos` [nq]."""
        self.data.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, self.data)
        if self.on_sites:
            return self.data.site_xpos[self.objects[0]] - self.data.site_xpos[self.objects[1]]
        (b1, b2), (a1, a2) = self.objects, self.anchors
        d = self.data
        return d.xpos[b1] + d.xmat[b1].reshape(3, 3) @ a1 - d.xpos[b2] - d.xmat[b2].reshape(3, 3) @ a2

    def fit(self, driver: int, followers: list[int], index: dict[int, int]) -> list[Coupling]:
        """Solve the loop over the driver's range and fit each follower as a quartic of the driver."""
        m = self.model
        adr_d, adr_f = m.jnt_qposadr[driver], m.jnt_qposadr[followers]
        lo, hi = m.jnt_range[driver] if m.jnt_limited[driver] else (-math.pi, math.pi)
        samples = np.linspace(lo, hi, _LOOP_SAMPLES)
        start = int(np.argmin(np.abs(samples - m.qpos0[adr_d])))
        solved = np.zeros((_LOOP_SAMPLES, len(followers)))  # [S, F]
        for order in (range(start, _LOOP_SAMPLES), range(start, -1, -1)):
            qpos = m.qpos0.copy()
            for s in order:
                qpos[adr_d] = samples[s]
                qpos[adr_f] = self._close(qpos, adr_f)
                solved[s] = qpos[adr_f]
        x = samples - m.qpos0[adr_d]  # [S]
        couplings = []
        for k, f in enumerate(followers):
            y = solved[:, k] - m.qpos0[m.jnt_qposadr[f]]  # [S]
            for degree in range(1, 5):  # the lowest degree that fits: a parallelogram stays linear
                coef = np.polynomial.polynomial.polyfit(x, y, degree)
                error = np.abs(np.polynomial.polynomial.polyval(x, coef) - y).max()
                if error < _LOOP_FIT_EXACT:
                    break
            if error > _LOOP_FIT_TOL:
                warnings.warn(f"closed loop {self.name}: quartic fit of {_joint_name(m, f)!r} is off by up to {error:.1e}")
            coef = np.pad(coef, (0, 5 - len(coef)))
            couplings.append(Coupling(index[f], index[driver], tuple(float(c) for c in coef)))
        return couplings

    def _close(self, qpos: np.ndarray, adr: np.ndarray) -> np.ndarray:
        """Gauss-Newton on the follower entries qpos[adr] until the loop closes; returns them."""
        qpos, eps = qpos.copy(), 1e-7
        for _ in range(50):
            r = self.residual(qpos)  # [3]
            if np.linalg.norm(r) < _LOOP_TOL:
                return qpos[adr]
            jac = np.stack([(self.residual(_bumped(qpos, a, eps)) - r) / eps for a in adr], -1)  # [3, F]
            qpos[adr] -= np.linalg.lstsq(jac, r, rcond=None)[0]
        raise ValueError(f"closed loop {self.name} does not close (gap {np.linalg.norm(r):.2e} m)")


def _bumped(qpos: np.ndarray, adr: int, eps: float) -> np.ndarray:
    out = qpos.copy()
    out[adr] += eps
    return out


def _path_joints(model: mujoco.MjModel, body1: int, body2: int) -> list[int]:
    """Joints of the bodies between body1/body2 and their lowest common ancestor (exclusive), in joint order."""

    def ancestors(b: int) -> list[int]:
        chain = [b]
        while chain[-1] != 0:
            chain.append(int(model.body_parentid[chain[-1]]))
        return chain

    up1, up2 = ancestors(body1), ancestors(body2)
    common = set(up1) & set(up2)
    bodies = [b for b in up1 + up2 if b not in common]
    return sorted(j for b in bodies for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]))
