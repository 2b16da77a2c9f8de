"""What one training step looks at: a pose with some of its views composited over a background colour,
or a few poses' point clouds for the skinning stage. Also finds or generates the dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from drrobot.data.manifest import DatasetError, read_manifest
from drrobot.data.reader import RobotDataset

REQUIRED_SPLITS = ("canonical", "train", "test")


@dataclasses.dataclass
class ViewBatch:
    """C views of one pose, targets composited over `background`."""

    joints: torch.Tensor  # [1, J]
    base_pose: torch.Tensor | None  # [1, 7] floating base only
    viewmats: torch.Tensor  # [1, C, 4, 4]
    Ks: torch.Tensor  # [1, C, 3, 3]
    target: torch.Tensor  # [C, H, W, 3] the robot over `background` (anti-aliased edges)
    alpha: torch.Tensor  # [C, H, W] the robot's coverage in [0, 1]
    links: torch.Tensor  # [C, H, W] int64 id of the link covering most of each pixel, -1 on background
    background: torch.Tensor  # [3]

    @property
    def height(self) -> int:
        return self.target.shape[1]

    @property
    def width(self) -> int:
        return self.target.shape[2]


@dataclasses.dataclass
class PointBatch:
    """Ground-truth surface point clouds of B poses."""

    joints: torch.Tensor  # [B, J]
    base_pose: torch.Tensor | None  # [B, 7]
    points: torch.Tensor  # [B, P, 3] world


def check_dataset(root: Path, robot_name: str) -> dict:
    """The manifest of a complete dataset of `robot_name` with the splits training needs, or a clear error."""
    manifest = read_manifest(root)
    if manifest.get("status") != "complete":
        raise DatasetError(f"dataset {root} is incomplete: run `drrobot data` with the same settings to finish it")
    recorded = manifest["robot"]["name"]
    if recorded != robot_name:
        raise DatasetError(f"dataset {root} is of robot {recorded!r}, not {robot_name!r}: pass --data or --robot")
    missing = [s for s in REQUIRED_SPLITS if not manifest["splits"].get(s)]
    if missing:
        raise DatasetError(f"dataset {root} has no samples in split(s) {', '.join(missing)}; regenerate it")
    return manifest


class Sampler:
    """Random training batches from a dataset split, seeded."""

    def __init__(self, dataset: RobotDataset, rng: np.random.Generator, device: torch.device):
        self.dataset = dataset
        self.rng = rng
        self.device = device
        self.num_views = len(dataset.views)

    def views(self, num_views: int, random_background: bool) -> ViewBatch:
        sample = self.dataset[int(self.rng.integers(len(self.dataset)))]
        chosen = self.rng.choice(self.num_views, size=min(num_views, self.num_views), replace=False)
        chosen = torch.as_tensor(np.sort(chosen))
        alpha = sample["alpha"][chosen]  # [C, H, W]
        background = torch.as_tensor(self.rng.random(3) if random_background else np.zeros(3), dtype=torch.float32)
        target = sample["rgb"][chosen] + (1 - alpha[..., None]) * background  # [C, H, W, 3]
        return ViewBatch(
            joints=sample["joints"][None].to(self.device),
            base_pose=_base_pose(sample, self.device, batch=True),
            viewmats=sample["viewmat"][chosen][None].to(self.device),
            Ks=sample["K"][chosen][None].to(self.device),
            target=target.to(self.device),
            alpha=alpha.to(self.device),
            links=sample["mask"][chosen].to(self.device),
            background=background.to(self.device),
        )

    def points(self, num_poses: int) -> PointBatch:
        indices = self.rng.choice(len(self.dataset), size=min(num_poses, len(self.dataset)), replace=False)
        samples = [self.dataset[int(i)] for i in indices]
        base = [_base_pose(s, self.device) for s in samples]
        return PointBatch(
            joints=torch.stack([s["joints"] for s in samples]).to(self.device),
            base_pose=None if base[0] is None else torch.stack(base),
            points=torch.stack([s["points"] for s in samples]).to(self.device),
        )


def _base_pose(sample: dict, device: torch.device, batch: bool = False) -> torch.Tensor | None:
    if "base_pose" not in sample:
        return None
    pose = sample["base_pose"].float().to(device)  # [7]
    return pose[None] if batch else pose
