"""Read a dataset made by `drrobot data` as torch tensors (format: data/README.md).

>>> ds = RobotDataset("outputs/panda-data", split="train", views=[0, 1, 2])
>>> sample = ds[0]          # dict of tensors, e.g. sample["rgb"]: [V, H, W, 3] float in [0, 1]
>>> over_white = sample["rgb"] + (1 - sample["alpha"][..., None])   # the robot composited over white
>>> surface = load_surface("outputs/panda-data")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from drrobot.data.files import SampleFileError, read_npz
from drrobot.data.manifest import SURFACE, DatasetError, read_manifest
from drrobot.data.sample import sample_path

VIEW_KEYS = ("rgb", "alpha", "depth", "mask", "K", "viewmat")  # arrays with a leading view axis [V, ...]


class RobotDataset(Dataset):
    """One split of a dataset: item i is pose i with its views, as a dict of tensors.

    rgb [V, H, W, 3] float32 in [0, 1] over black; alpha [V, H, W] float32 coverage in [0, 1] (the robot over a
    background b is rgb + (1 - alpha) b); depth [V, H, W] float32 metres (0: background); mask [V, H, W] int64
    link id (-1: background); K [V, 3, 3]; viewmat [V, 4, 4] world->camera (OpenCV); joints [J];
    link_poses [L, 4, 4] link->world; points [P, 3] world; point_link [P] int64; base_pose [7] (floating
    base only); index (int). `views` picks a subset of the V views (same for every item).
    """

    def __init__(self, root: str | Path, split: str = "train", views: Sequence[int] | None = None):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        if self.manifest.get("status") != "complete":
            raise DatasetError(
                f"dataset {self.root} is incomplete (generation was interrupted): run the same `drrobot data` "
                "command again to finish it"
            )
        splits = self.manifest["splits"]
        if split not in splits:
            raise DatasetError(f"dataset {self.root} has no split {split!r}; splits: {', '.join(splits)}")
        self.split = split
        self.files = [sample_path(self.root, split, i) for i in range(splits[split])]
        missing = [str(f) for f in self.files if not f.is_file()]
        if missing:
            raise SampleFileError(f"dataset {self.root} lacks {len(missing)} sample file(s), e.g. {missing[0]}")
        n_views = self.manifest["views_per_sample"]
        self.views = list(range(n_views)) if views is None else [int(v) for v in views]
        if not self.views or not all(0 <= v < n_views for v in self.views):
            raise ValueError(f"views must be indices in [0, {n_views}), got {list(views or [])}")

    @property
    def joint_names(self) -> list[str]:
        return self.manifest["joints"]["names"]

    @property
    def link_names(self) -> list[str]:
        return self.manifest["links"]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        arrays = read_npz(path)
        self._check_shapes(path, arrays)
        out = {}
        for key, value in arrays.items():
            if key in VIEW_KEYS:
                value = value[self.views]
            if key in ("rgb", "alpha"):
                out[key] = torch.from_numpy(value.astype(np.float32) / 255.0)
            elif value.dtype == np.int16:
                out[key] = torch.from_numpy(value.astype(np.int64))
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(value))
        out["index"] = index
        return out

    def _check_shapes(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        m = self.manifest
        v, (h, w) = m["views_per_sample"], m["image_size"]
        expected = {
            "rgb": (v, h, w, 3),
            "alpha": (v, h, w),
            "depth": (v, h, w),
            "mask": (v, h, w),
            "K": (v, 3, 3),
            "viewmat": (v, 4, 4),
            "joints": (len(m["joints"]["names"]),),
            "link_poses": (len(m["links"]), 4, 4),
            "points": (m["surface_points"], 3),
            "point_link": (m["surface_points"],),
        }
        if m["joints"]["floating_base"]:
            expected["base_pose"] = (7,)
        for key, shape in expected.items():
            if key not in arrays or arrays[key].shape != shape:
                got = arrays[key].shape if key in arrays else "missing"
                raise SampleFileError(f"dataset file {path}: {key} has shape {got}, the manifest says {shape}")


def load_surface(root: str | Path) -> dict[str, torch.Tensor]:
    """The canonical surface sample in link frames: points_local [P, 3], link_ids [P] int64, colors [P, 3]
    in [0, 1], normals [P, 3]."""
    read_manifest(root)
    arrays = read_npz(Path(root) / SURFACE)
    return {
        k: torch.from_numpy(v.astype(np.int64) if v.dtype == np.int16 else v) for k, v in arrays.items()
    }
