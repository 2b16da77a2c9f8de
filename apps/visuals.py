"""Outputs people look at, shared by the apps: renders over input frames, videos, image grids, joint plots."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np
import torch

from drrobot.data.files import write_atomic
from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.optimize import render_state
from drrobot.fit.reconstruct import shrink
from drrobot.model import RobotModel

OVERLAY_OPACITY = 0.65


def overlay_frames(
    model: RobotModel,
    frames: Sequence[np.ndarray],  # T x [H, W, 3] uint8
    joints: torch.Tensor,  # [T, J]
    viewmats: torch.Tensor,  # [T, 4, 4]
    Ks: torch.Tensor,  # [T, 3, 3] at the frames' resolution
    width: int,
    base_pose: torch.Tensor | None = None,  # [T, 7]
) -> list[np.ndarray]:
    """Each frame (shrunk to `width`) with the model rendered at its estimate on top: T x [h, width, 3] uint8."""
    out = []
    for t in range(len(joints)):
        frame = np.asarray(frames[t])
        H, W = frame.shape[:2]
        height = max(1, round(H * width / W))
        image = shrink(frame, width, height).to(model.device)  # [h, w, 3]
        K = scale_intrinsics(Ks[t].to(model.device), width / W, height / H)
        with torch.no_grad():
            render = render_state(model, joints[t : t + 1].to(model.device), viewmats[t].to(model.device)[None, None],
                                  K[None, None], width, height,
                                  base_pose=None if base_pose is None else base_pose[t : t + 1])  # fmt: skip
        alpha = OVERLAY_OPACITY * render.alphas[0, 0]  # [h, w, 1]
        blended = image * (1 - alpha) + OVERLAY_OPACITY * render.images[0, 0]
        out.append(to_uint8(blended))
    return out


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().byte().cpu().numpy()


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """An mp4 (H.264, even frame size) written atomically."""
    frames = [_even(f) for f in frames]
    payload = iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps, codec="libx264",
                          macro_block_size=1)  # fmt: skip
    write_atomic(path, payload)
    return path


def write_grid(path: Path, images: Sequence[np.ndarray], columns: int = 4) -> Path:
    """Images (same size) tiled into one PNG, written atomically."""
    h, w = images[0].shape[:2]
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    write_atomic(path, iio.imwrite("<bytes>", grid, extension=".png"))
    return path


def plot_joints(
    path: Path, joint_names: Sequence[str], estimate: np.ndarray, truth: np.ndarray | None = None,
    frame_labels: Sequence[str] | None = None,
) -> Path:  # fmt: skip
    """One small panel per joint over time: estimate [T, J] (and truth [T, J], NaN where unknown); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    J = len(joint_names)
    columns = min(4, J)
    rows = math.ceil(J / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.2 * rows), squeeze=False, sharex=True)
    t = np.arange(len(estimate))
    for j, ax in enumerate(axes.flat):
        if j >= J:
            ax.axis("off")
            continue
        ax.plot(t, estimate[:, j], label="estimate", lw=1.5)
        if truth is not None and not np.isnan(truth[:, j]).all():
            ax.plot(t, truth[:, j], "--", label="ground truth", lw=1.2)
        ax.set_title(joint_names[j], fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("frame", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop to even width and height (H.264 needs them)."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]
