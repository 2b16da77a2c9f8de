"""2D point tracks through a video: OpenCV's pyramidal Lucas-Kanade (no weights), or CoTracker when installed.

    tracks = track_points_lk(frames, num_points=256, mask=foreground)       # Tracks: points [T, N, 2], visible
    tracks = track_points_cotracker(frames, "path/to/scaled_offline.pth")  # optional, CC-BY-NC code and weights

Points are in pixels of the frames (pixel centres at +0.5, as drrobot's projections). A track that LK loses
(status 0 or forward-backward error over `fb_threshold` px) stays invisible from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from drrobot.errors import DrRobotError, UsageError


class TrackingError(DrRobotError):
    """Tracks that cannot be made or read (the message names the file or what to install)."""


@dataclasses.dataclass
class Tracks:
    points: np.ndarray  # [T, N, 2] float32 pixels
    visible: np.ndarray  # [T, N] bool

    def __post_init__(self):
        if self.points.ndim != 3 or self.points.shape[-1] != 2 or self.visible.shape != self.points.shape[:2]:
            raise UsageError(f"tracks must be points [T, N, 2] with visible [T, N], got {self.points.shape} and "
                             f"{self.visible.shape}")  # fmt: skip

    def save(self, path: str | Path) -> Path:
        from drrobot.data.files import npz_bytes
        from drrobot.io import write_atomic

        write_atomic(path, npz_bytes({"points": self.points, "visible": self.visible}, compress=True))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Tracks":
        """Tracks from an .npz with `points` [T, N, 2] and `visible` [T, N] (never unpickled)."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                points = np.asarray(npz["points"], dtype=np.float32)
                visible = np.asarray(npz["visible"], dtype=bool) if "visible" in npz.files else np.ones(points.shape[:2], bool)
        except (OSError, ValueError, KeyError) as err:
            raise TrackingError(f"cannot read tracks {path} ({err}): expected an .npz with points [T, N, 2] and "
                                "visible [T, N]") from err  # fmt: skip
        return cls(points, visible)


def import_cv2():
    """OpenCV, or a TrackingError saying how to install it."""
    try:
        import cv2
    except ImportError as err:
        raise TrackingError(f"OpenCV is not installed ({err}): pip install 'drrobot[retarget]'") from err
    return cv2


def track_points_lk(
    frames: Sequence[np.ndarray],  # T x [H, W, 3] uint8
    num_points: int = 256,
    mask: np.ndarray | None = None,  # [H, W] bool: where to start tracks (the source's foreground)
    queries: np.ndarray | None = None,  # [N, 2] pixels in frame 0 (instead of detected corners)
    window: int = 21,
    levels: int = 3,
    fb_threshold: float = 1.0,
) -> Tracks:
    """Lucas-Kanade tracks of corners detected in frame 0 inside `mask` (or of the given `queries`)."""
    cv2 = import_cv2()

    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    if len(grey) < 2:
        raise UsageError(f"tracking needs at least 2 frames, got {len(grey)}")
    if queries is None:
        corner_mask = None if mask is None else mask.astype(np.uint8) * 255
        found = cv2.goodFeaturesToTrack(grey[0], maxCorners=num_points, qualityLevel=0.01, minDistance=3,
                                        mask=corner_mask, blockSize=5)  # fmt: skip
        if found is None:
            raise TrackingError("no trackable points in the first frame's foreground: is the robot visible?")
        start = found.reshape(-1, 2) + 0.5  # OpenCV pixel centres are integers; ours are at +0.5
    else:
        start = np.asarray(queries, dtype=np.float32).reshape(-1, 2)
    params = dict(winSize=(window, window), maxLevel=levels,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))  # fmt: skip
    points = np.zeros((len(grey), len(start), 2), np.float32)
    visible = np.zeros((len(grey), len(start)), bool)
    points[0], visible[0] = start, True
    for t in range(1, len(grey)):
        previous = (points[t - 1] - 0.5).reshape(-1, 1, 2).astype(np.float32)
        forward, status, _ = cv2.calcOpticalFlowPyrLK(grey[t - 1], grey[t], previous, None, **params)
        backward, status_back, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t - 1], forward, None, **params)
        fb_error = np.linalg.norm(backward - previous, axis=-1).reshape(-1)
        ok = status.reshape(-1).astype(bool) & status_back.reshape(-1).astype(bool) & (fb_error < fb_threshold)
        visible[t] = visible[t - 1] & ok
        points[t] = np.where(visible[t][:, None], forward.reshape(-1, 2) + 0.5, points[t - 1])
    return Tracks(points, visible)


def track_points_cotracker(frames: Sequence[np.ndarray], checkpoint: str | Path, grid_size: int = 16,
                           device: str = "cpu") -> Tracks:  # fmt: skip
    """CoTracker's tracks on a grid (its repository installed, a local checkpoint; CC-BY-NC: never bundled)."""
    import torch

    try:
        from cotracker.predictor import CoTrackerPredictor
    except ImportError as err:
        raise TrackingError("CoTracker is not installed: pip install git+https://github.com/facebookresearch/co-tracker "
                            "(its code and weights are CC-BY-NC), or use the built-in Lucas-Kanade tracker") from err  # fmt: skip
    if not Path(checkpoint).is_file():
        raise TrackingError(f"CoTracker checkpoint {checkpoint} not found")
    predictor = CoTrackerPredictor(checkpoint=str(checkpoint)).to(device)
    video = torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2)[None].float().to(device)  # [1, T, 3, H, W] 0-255
    with torch.no_grad():
        points, visible = predictor(video, grid_size=grid_size)  # [1, T, N, 2], [1, T, N]
    return Tracks(points[0].cpu().numpy().astype(np.float32) + 0.5, visible[0].cpu().numpy().astype(bool))
