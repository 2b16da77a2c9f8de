"""Run logging: a JSON-lines file and PNG image grids in the run directory, mirrored to wandb when available."""

from __future__ import annotations

import colorsys
import json
import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch


def image_grid(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Rows of prediction | target | |error| x 4 for C views. pred, target: [C, H, W, 3] in [0, 1]. -> uint8."""
    error = ((pred - target).abs() * 4).clamp(0, 1)
    rows = torch.cat([pred.clamp(0, 1), target, error], dim=2)  # [C, H, 3W, 3]
    grid = rows.reshape(-1, *rows.shape[2:])  # [C*H, 3W, 3]
    return (grid.detach().cpu().numpy() * 255 + 0.5).astype(np.uint8)


def link_grid(predicted: torch.Tensor, truth: torch.Tensor, num_links: int) -> np.ndarray:
    """Rows of true link ids | predicted link ids | mismatch (red) for V views, one colour per link, black
    background. predicted, truth: [V, H, W] link ids, -1 background. -> uint8 [V*H, 3W, 3]."""
    hues = [colorsys.hsv_to_rgb((0.61803 * i) % 1.0, 0.75, 0.95) for i in range(num_links)]
    palette = torch.tensor([*hues, (0.0, 0.0, 0.0)])  # [L + 1, 3]; index -1 is the background
    mismatch = (predicted != truth)[..., None] * torch.tensor([1.0, 0.1, 0.1])  # [V, H, W, 3]
    rows = torch.cat([palette[truth], palette[predicted], mismatch], dim=2)  # [V, H, 3W, 3]
    return (rows.reshape(-1, *rows.shape[2:]).numpy() * 255 + 0.5).astype(np.uint8)


class RunLogger:
    """Scalars to `<run>/metrics.jsonl`, images to `<run>/images/`, both to wandb unless `mode="disabled"`."""

    def __init__(self, run_dir: Path, config: dict, mode: str = "offline", name: str | None = None):
        self.run_dir = Path(run_dir)
        (self.run_dir / "images").mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        self._wandb = None
        if mode != "disabled":
            self._wandb = _start_wandb(self.run_dir, config, mode, name)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._metrics.write(json.dumps({"step": step, **values}) + "\n")
        self._metrics.flush()
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def image(self, step: int, name: str, image: np.ndarray) -> Path:
        path = self.run_dir / "images" / f"{name}_{step:06d}.png"
        iio.imwrite(path, image)
        if self._wandb is not None:
            import wandb

            self._wandb.log({name: wandb.Image(image)}, step=step)
        return path

    def close(self) -> None:
        self._metrics.close()
        if self._wandb is not None:
            self._wandb.finish()


def _start_wandb(run_dir: Path, config: dict, mode: str, name: str | None):
    try:
        import wandb
    except ImportError:
        if mode == "online":
            warnings.warn("wandb is not installed (pip install wandb): logging to the run directory only")
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(project="drrobot", dir=str(run_dir), config=config, mode=mode, name=name, reinit=True)
