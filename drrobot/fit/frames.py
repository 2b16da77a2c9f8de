"""Where the frames of a pose reconstruction come from: image files, a folder, a video file, a DREAM split.

Each source is a sequence of RGB frames [H, W, 3] uint8 with a name per frame (the image stem, or the frame
number of a video), read lazily where the format allows (images, DREAM) so long sequences are not held in memory.

>>> frames = open_frames(video="robot.mp4", stride=2)     # or images=[...], folder="dir", dream="dir"
>>> len(frames), frames.names[0], frames[0].shape           # T, "000000", (H, W, 3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import imageio.v3 as iio
import numpy as np

from drrobot.data.files import read_rgb8
from drrobot.errors import DrRobotError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class FrameError(DrRobotError, ValueError):
    """Frames that cannot be read (the message names the file and what to do)."""


class ImageFrames:
    """Frames from image files, in the given order."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise FrameError("no images given")
        for p in self.paths:
            if not p.is_file():
                raise FrameError(f"image {p} does not exist")
        self.names = [_stem(p) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return read_rgb(self.paths[index])


class VideoFrames:
    """Every `stride`-th frame of a video file (decoded once, kept in memory), at most `max_frames`."""

    def __init__(self, path: str | Path, stride: int = 1, max_frames: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameError(f"video {self.path} does not exist")
        frames = []
        try:
            for i, frame in enumerate(iio.imiter(self.path)):
                if i % stride == 0:
                    frames.append(_video_rgb(np.asarray(frame), self.path))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except (OSError, ValueError, RuntimeError) as err:
            raise FrameError(f"cannot read video {self.path} ({type(err).__name__}: {err}); is it a video file "
                             "(mp4, avi, mov, webm)? Reading mp4 needs imageio-ffmpeg") from err  # fmt: skip
        if not frames:
            raise FrameError(f"video {self.path} has no frames")
        self.frames = frames
        self.names = [f"{stride * i:06d}" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.frames[index]


class DreamFrames:
    """The images of a DREAM split (`drrobot.data.dream.DreamSequence`), read on demand."""

    def __init__(self, sequence):
        self.sequence = sequence
        self.names = [f.stem for f in sequence.frames]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.sequence.read_image(index)


def open_frames(
    images: Sequence[str | Path] = (),
    folder: str | Path | None = None,
    video: str | Path | None = None,
    stride: int = 1,
    max_frames: int | None = None,
):
    """Exactly one of `images`, `folder` (its image files, sorted by name) or `video`; every `stride`-th frame."""
    given = [name for name, value in (("images", images), ("folder", folder), ("video", video)) if value]
    if len(given) != 1:
        raise FrameError(f"give exactly one frame source (images, folder or video), got {given or 'none'}")
    if stride < 1 or (max_frames is not None and max_frames < 1):
        raise FrameError(f"stride and max_frames must be >= 1, got {stride}, {max_frames}")
    if video:
        return VideoFrames(video, stride, max_frames)
    if folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise FrameError(f"image folder {folder} does not exist")
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise FrameError(f"image folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return ImageFrames(list(images)[::stride][:max_frames])


def read_rgb(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8 (grey and RGBA converted)."""
    try:
        return read_rgb8(path)
    except (OSError, ValueError) as err:
        raise FrameError(str(err)) from err


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask image as [H, W] float in [0, 1] (any channel count; > 0 is robot); errors if not `shape` (H, W)."""
    try:
        mask = np.asarray(iio.imread(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise FrameError(f"cannot read mask {path} ({type(err).__name__}: {err})") from err
    if mask.ndim == 3:
        mask = mask[..., :3].max(axis=-1)
    if mask.shape != tuple(shape):
        raise FrameError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its frame is {shape[1]}x{shape[0]}")
    mask = mask.astype(np.float32)
    return mask / max(float(mask.max()), 1.0)  # 0/1 or 0/255 masks alike


def _video_rgb(frame: np.ndarray, path: Path) -> np.ndarray:
    """A decoded video frame as [H, W, 3] uint8."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] not in (3, 4):
        raise FrameError(f"video {path} decodes to {frame.dtype} frames of shape {frame.shape}; expected 8-bit RGB")
    return np.ascontiguousarray(frame[..., :3])


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".rgb.jpg", ".rgb.png"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
