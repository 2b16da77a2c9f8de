"""Outputs people look at, shared by the apps: renders over input frames, videos, GIFs, PNG frames, image grids,
joint plots (the frames themselves come from `drrobot.renders`)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np
import torch

from drrobot.fit.cameras import scale_intrinsics
from drrobot.fit.reconstruct import shrink
from drrobot.io import ensure_writable_dir, write_atomic
from drrobot.model import RobotModel
from drrobot.renders import over, render_frames, to_uint8

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
    with torch.no_grad():
        weights = model.skinning_weights()  # [N, L]
    for t in range(len(joints)):
        frame = np.asarray(frames[t])
        H, W = frame.shape[:2]
        height = max(1, round(H * width / W))
        K = scale_intrinsics(Ks[t], width / W, height / H)
        rgba = render_frames(model, joints[t : t + 1], viewmats[t][None], K[None], width, height,
                             None if base_pose is None else base_pose[t : t + 1], skinning_weights=weights)[0, 0]  # fmt: skip
        out.append(to_uint8(over(rgba, shrink(frame, width, height), OVERLAY_OPACITY)))
    return out


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """An mp4 (H.264, even frame size) written atomically."""
    frames = [_even(f) for f in frames]
    payload = iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps, codec="libx264",
                          macro_block_size=1)  # fmt: skip
    write_atomic(path, payload)
    return path


def write_gif(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """An animated GIF (loops forever) written atomically."""
    payload = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
    write_atomic(path, payload)
    return path


def write_frames(folder: Path, frames: Sequence[np.ndarray]) -> list[Path]:
    """Each frame as `folder/NNNNNN.png` (lossless: the exact pixels), written atomically."""
    ensure_writable_dir(folder)
    paths = [folder / f"{t:06d}.png" for t in range(len(frames))]
    for path, frame in zip(paths, frames):
        write_atomic(path, iio.imwrite("<bytes>", frame, extension=".png"))
    return paths


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


MIN_PLOT_SPAN = 0.01  # joint units (rad or m): a panel shows at least this range, so float noise on a joint that
#   does not move (a gripper's finger) is drawn flat instead of magnified to fill the panel


def _at_least_span(ax, span: float) -> None:
    """Widen the panel's y range about its middle to at least `span`, and label its ticks without an offset."""
    low, high = ax.get_ylim()
    if high - low < span:
        middle = (low + high) / 2
        ax.set_ylim(middle - span / 2, middle + span / 2)
    ax.ticklabel_format(axis="y", useOffset=False)


def plot_joints(
    path: Path, joint_names: Sequence[str], estimate: np.ndarray, truth: np.ndarray | None = None,
    frame_labels: Sequence[str] | None = None, unplaced: Sequence[str] = (),
) -> Path:  # fmt: skip
    """One small panel per joint over time: estimate [T, J] (and truth [T, J], NaN where unknown); PNG. The joints
    named in `unplaced` (`Reconstruction.unplaced`) say so in their panel's title."""
    plt = _pyplot()
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
        title = f"{joint_names[j]} (not placed by keypoints)" if joint_names[j] in unplaced else joint_names[j]
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        _at_least_span(ax, MIN_PLOT_SPAN)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("frame", fontsize=8)
    return _save_figure(path, fig)


def plot_curve(path: Path, values: Sequence[float], xlabel: str, ylabel: str, title: str = "") -> Path:
    """One curve (e.g. a score per step) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(values)), values, lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return _save_figure(path, fig)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(path: Path, fig) -> Path:
    """`fig` as a PNG at `path` (atomically), then closed."""
    import matplotlib.pyplot as plt

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
