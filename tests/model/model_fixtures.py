"""Helpers for the model tests: small models on the toy robots from synthetic surface samples, cameras."""

import numpy as np
import torch

from drrobot.fit.cameras import look_at as camera_look_at
from drrobot.kinematics import RobotKinematics
from drrobot.model import ModelConfig, RobotModel


def synthetic_surface(robot: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points [n, 3] in link frames (a 6 cm box above each link origin), link ids [n], colours per link [n, 3]."""
    rng = np.random.default_rng(seed)
    num_links = len(RobotKinematics.from_robot(robot).link_names)
    link_ids = rng.integers(0, num_links, n)
    points = rng.uniform(-0.03, 0.03, (n, 3)) + [0.0, 0.0, 0.05]
    palette = rng.uniform(0.1, 0.9, (num_links, 3))
    return points.astype(np.float32), link_ids, palette[link_ids].astype(np.float32)


def make_model(robot: str = "toy_arm", n: int = 400, seed: int = 0, **config) -> RobotModel:
    """A fresh model; `config` holds ModelConfig fields (sub-configs as dicts)."""
    torch.manual_seed(seed)
    return RobotModel.from_surface(robot, *synthetic_surface(robot, n, seed), ModelConfig.from_dict(config))


def look_at(eye, target=(0.0, 0.0, 0.35)) -> torch.Tensor:
    """World->camera [4, 4] (OpenCV) for a camera at `eye` facing `target` (the library's look-at)."""
    return camera_look_at(torch.tensor(eye, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))


def cameras(B: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two cameras per pose: viewmats [B, 2, 4, 4], Ks [B, 2, 3, 3] for size x size images."""
    views = torch.stack([look_at((1.2, 0.3, 0.5)), look_at((0.2, 1.2, 0.6))])
    K = torch.tensor([[1.2 * size, 0.0, size / 2], [0.0, 1.2 * size, size / 2], [0.0, 0.0, 1.0]])
    return views.expand(B, 2, 4, 4).clone(), K.expand(B, 2, 3, 3).clone()

