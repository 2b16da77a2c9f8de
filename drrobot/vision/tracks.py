"""2D point tracks through a video: OpenCV's pyramidal Lucas-Kanade (no weights), or CoTracker when installed.

    tracks = track_points_lk(frames, num_points=256, masks=foreground)     # Tracks: points [T, N, 2], visible
    tracks = track_points_cotracker(frames, "path/to/scaled_offline.pth")  # optional, CC-BY-NC code and weights
    retarget(..., tracker=cotracker_render_tracker("scaled_offline.pth"), image_size=(W, H))  # on the robot's renders

Points are in pixels of the frames (pixel centres at +0.5, as drrobot's projections). A track that LK loses
(status 0 or forward-backward error over `fb_threshold` px) stays invisible from then on; new tracks start on
fresh corners when too few are left.
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
    masks: np.ndarray | None = None,  # [T, H, W] bool: where tracks may start (the source's foreground)
    queries: np.ndarray | None = None,  # [N, 2] pixels in frame 0 (instead of detected corners; no re-seeding)
    window: int = 21,
    levels: int = 3,
    fb_threshold: float = 2.0,
    reseed_below: float = 0.5,
) -> Tracks:
    """Lucas-Kanade tracks of corners detected inside `masks` (or of the given `queries`). When fewer than
    `reseed_below` x `num_points` tracks are left, new corners of the current frame start new tracks (invisible
    before), so long videos stay covered."""
    cv2 = import_cv2()
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    T = len(grey)
    if T < 2:
        raise UsageError(f"tracking needs at least 2 frames, got {T}")
    if queries is None:
        start = _corners(cv2, grey[0], num_points, None if masks is None else masks[0])
        if start is None:
            raise TrackingError("no trackable points in the first frame's foreground: is the robot visible?")
    else:
        start = np.asarray(queries, dtype=np.float32).reshape(-1, 2)
    points = np.repeat(start[None], T, axis=0)  # [T, N, 2]
    visible = np.zeros((T, len(start)), bool)
    visible[0] = True
    params = dict(winSize=(window, window), maxLevel=levels,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))  # fmt: skip
    for t in range(1, T):
        alive = np.flatnonzero(visible[t - 1])
        if len(alive):
            previous = (points[t - 1, alive] - 0.5).reshape(-1, 1, 2).astype(np.float32)  # OpenCV centres: integers
            forward, status, _ = cv2.calcOpticalFlowPyrLK(grey[t - 1], grey[t], previous, None, **params)
            backward, status_back, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t - 1], forward, None, **params)
            fb_error = np.linalg.norm(backward - previous, axis=-1).reshape(-1)
            ok = status.reshape(-1).astype(bool) & status_back.reshape(-1).astype(bool) & (fb_error < fb_threshold)
            visible[t, alive] = ok
            points[t:, alive[ok]] = forward.reshape(-1, 2)[ok] + 0.5
        if queries is None and visible[t].sum() < reseed_below * num_points:
            mask = np.ones(grey[t].shape, bool) if masks is None else masks[t].copy()
            for x, y in points[t, visible[t]]:  # no new track on top of a living one
                cv2.circle(mask.view(np.uint8), (int(x), int(y)), 5, 0, -1)
            new = _corners(cv2, grey[t], num_points - int(visible[t].sum()), mask)
            if new is not None:
                points = np.concatenate([points, np.repeat(new[None], T, axis=0)], axis=1)
                born = np.zeros((T, len(new)), bool)
                born[t] = True
                visible = np.concatenate([visible, born], axis=1)
    return Tracks(points.astype(np.float32), visible)


def _corners(cv2, grey: np.ndarray, count: int, mask: np.ndarray | None) -> np.ndarray | None:
    """[K, 2] corner pixels (centres at +0.5) inside `mask`, or None."""
    found = cv2.goodFeaturesToTrack(grey, maxCorners=max(count, 1), qualityLevel=0.01, minDistance=3,
                                    mask=None if mask is None else mask.astype(np.uint8) * 255, blockSize=5)  # fmt: skip
    return None if found is None else found.reshape(-1, 2).astype(np.float32) + 0.5


def _cotracker(checkpoint: str | Path, device: str):
    """CoTracker's predictor from a local checkpoint (its repository installed; CC-BY-NC: never bundled)."""
    try:
        from cotracker.predictor import CoTrackerPredictor
    except ImportError as err:
        raise TrackingError("CoTracker is not installed: pip install git+https://github.com/facebookresearch/co-tracker "
                            "(its code and weights are CC-BY-NC), or use the built-in Lucas-Kanade tracker") from err  # fmt: skip
    if not Path(checkpoint).is_file():
        raise TrackingError(f"CoTracker checkpoint {checkpoint} not found")
    return CoTrackerPredictor(checkpoint=str(checkpoint)).to(device)


def track_points_cotracker(frames: Sequence[np.ndarray], checkpoint: str | Path, grid_size: int = 16,
                           device: str = "cpu") -> Tracks:  # fmt: skip
    """CoTracker's tracks on a grid."""
    import torch

    predictor = _cotracker(checkpoint, device)
    video = torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2)[None].float().to(device)  # [1, T, 3, H, W] 0-255
    with torch.no_grad():
        points, visible = predictor(video, grid_size=grid_size)  # [1, T, N, 2], [1, T, N]
    return Tracks(points[0].cpu().numpy().astype(np.float32) + 0.5, visible[0].cpu().numpy().astype(bool))


def cotracker_render_tracker(checkpoint: str | Path, device: str = "cpu", iters: int = 6):
    """CoTracker as a differentiable `drrobot.fit.retarget.RenderTracker` (the paper's robot side): its network
    called directly, since the predictor's `forward` runs without gradients. video [T, H, W, 3] in [0, 1], queries
    [N, 3] (frame, x, y; pixel centres at +0.5) -> tracks [T, N, 2]."""
    import torch
    import torch.nn.functional as F

    predictor = _cotracker(checkpoint, device)
    predictor.model.requires_grad_(False)
    h, w = predictor.interp_shape

    def track(video, queries):
        T, H, W, _ = video.shape
        clip = F.interpolate(video.permute(0, 3, 1, 2) * 255.0, size=(h, w), mode="bilinear", align_corners=True)
        scale = video.new_tensor([(w - 1) / max(W - 1, 1), (h - 1) / max(H - 1, 1)])
        model_queries = torch.cat([queries[:, :1], (queries[:, 1:] - 0.5) * scale], dim=-1)  # [N, 3]
        tracks = predictor.model(video=clip[None], queries=model_queries[None], iters=iters)[0]  # [1, T, N, 2]
        return tracks[0] / scale + 0.5

    return track
