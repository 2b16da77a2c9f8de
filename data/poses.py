"""Collision-free joint poses: uniform within the limits, rejected on self-penetration (deterministic)."""

from __future__ import annotations

import mujoco
import numpy as np

from drrobot.joints import JointSpec
from drrobot.errors import DrRobotError


class PoseError(DrRobotError, RuntimeError):
    """No collision-free pose was found within the allowed number of tries."""


class PoseSampler:
    """Poses the robot in its own `MjData` (`mj_forward`, never `mj_step`) and rejects self-collisions."""

    def __init__(self, model: mujoco.MjModel, spec: JointSpec, tolerance: float, max_tries: int):
        self.model, self.spec = model, spec
        self.data = mujoco.MjData(model)
        self.tolerance, self.max_tries = tolerance, max_tries

    def set_pose(self, joints: np.ndarray, base_pose: np.ndarray | None = None) -> mujoco.MjData:
        """Put the robot at `joints` [J] (and `base_pose` [7] for a floating base); positions, contacts."""
        self.data.qpos[:] = self.spec.to_qpos(joints, base_pose)
        mujoco.mj_forward(self.model, self.data)
        return self.data

    def self_collisions(self) -> list[tuple[int, int, float]]:
        """(body1, body2, distance) of robot-robot contacts penetrating deeper than the tolerance."""
        found = []
        for c in self.data.contact[: self.data.ncon]:
            b1, b2 = self.model.geom_bodyid[c.geom1], self.model.geom_bodyid[c.geom2]
            if b1 > 0 and b2 > 0 and c.dist < -self.tolerance:
                found.append((int(b1), int(b2), float(c.dist)))
        return found

    def sample(self, rng: np.random.Generator) -> np.ndarray:  # [J]
        """Draw poses from `rng` until one is collision-free; the robot is left in that pose."""
        for _ in range(self.max_tries):
            joints = self.spec.sample(rng, 1)[0].astype(np.float32).astype(np.float64)  # stored as float32
            self.set_pose(joints)
            if not self.self_collisions():
                return joints
        raise PoseError(
            f"no collision-free pose in {self.max_tries} tries (collision tolerance {self.tolerance} m); "
            "raise --max-pose-tries or --collision-tolerance, or check the robot's collision geoms"
        )
