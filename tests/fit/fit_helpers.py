"""Helpers for the fitting tests: a toy robot's self-model made from its surface (no training), and frames
rendered from it with a known pose and camera."""

from __future__ import annotations

import numpy as np
import torch

from drrobot.appearance import AppearanceConfig
from drrobot.data.surface import sample_surface
from drrobot.fit.cameras import Cameras, look_at
from drrobot.fit.optimize import render_state
from drrobot.model import ModelConfig, RobotModel
from drrobot.robots import load_robot

TOY_EYE = (1.2, 0.6, 0.7)
TOY_TARGET = (0.0, 0.0, 0.35)


def surface_model(robot: str = "toy_arm", points: int = 2000, seed: int = 0, appearance: bool = False) -> RobotModel:
    """Gaussians on the robot's visual surface with its colours: a stand-in for a trained self-model
    (SH degree 0; the appearance field, when wanted, is the identity)."""
    torch.manual_seed(seed)
    description = load_robot(robot)
    s = sample_surface(description.mj_model(), (0, 1, 2), points, np.random.default_rng(seed))
    config = ModelConfig(sh_degree=0, appearance=AppearanceConfig(enabled=appearance))
    return RobotModel.from_surface(description, s.points_local, s.link_ids, s.colors, config)


def toy_camera(width: int = 96, height: int = 72, eye=TOY_EYE) -> Cameras:
    return Cameras.from_fov(50.0, width, height, look_at(torch.tensor(eye), torch.tensor(TOY_TARGET)))


def render_frames(model: RobotModel, joints: torch.Tensor, camera: Cameras, background: torch.Tensor) -> np.ndarray:
    """uint8 frames [T, H, W, 3] of joints [T, J] seen by one camera over `background` [H, W, 3] or [3]."""
    T = len(joints)
    with torch.no_grad():
        out = render_state(model, joints, camera.viewmats.expand(T, 1, 4, 4), camera.Ks.expand(T, 1, 3, 3),
                           camera.width, camera.height)  # fmt: skip
    images = out.images[:, 0] + (1 - out.alphas[:, 0]) * background
    return (images.clamp(0, 1) * 255).round().byte().numpy()


def checker(width: int, height: int, cell: int = 8, seed: int = 1) -> torch.Tensor:
    """A random-coloured checkerboard [H, W, 3]: a cluttered static background."""
    rng = np.random.default_rng(seed)
    cells = torch.as_tensor(rng.uniform(0.25, 0.75, (height // cell + 1, width // cell + 1, 3)), dtype=torch.float32)
    return cells.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:height, :width]


DARK_BACKGROUND = torch.tensor([0.1, 0.1, 0.1])
