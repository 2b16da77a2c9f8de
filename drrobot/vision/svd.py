"""Stable Video Diffusion (diffusers) as a robot-video generator for video-model inverse dynamics (the `video`
extra): an image in, frames out, which `drrobot video2joints` turns into a joint trajectory.

    pipe = load_video_pipeline("path/to/stable-video-diffusion-img2vid-xt")   # any pipeline folder of that layout
    frames = generate_frames(pipe, first_frame, VideoGeneration(frames=14))    # T x [H, W, 3] uint8

Dr. Robot fine-tuned SVD-XT with text conditioning; any `StableVideoDiffusionPipeline` directory (e.g.
`save_pretrained` output) loads. Nothing is downloaded: the folder must be on disk.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from drrobot.errors import DrRobotError, UsageError


class VideoModelError(DrRobotError):
    """A video model (or diffusers itself) that cannot be loaded; the message says what to provide."""


@dataclasses.dataclass
class VideoGeneration:
    """What `generate_frames` asks the pipeline for."""

    frames: int = 14
    """Frames to generate (SVD: 14, SVD-XT: 25)."""
    steps: int = 25
    """Denoising steps."""
    height: int = 576
    width: int = 1024
    fps: int = 7
    """The frame-rate conditioning of SVD."""
    motion_bucket_id: int = 127
    """SVD's motion conditioning (higher: more motion)."""
    decode_chunk_size: int = 8
    """Frames decoded at once (lower: less memory)."""
    seed: int = 0


def load_video_pipeline(path: str | Path, device: torch.device | str = "cpu"):
    """A `StableVideoDiffusionPipeline` from a local folder, on `device` (float32 on the CPU, float16 on CUDA)."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise VideoModelError(f"--generate.model {path} is not a diffusers pipeline folder (no model_index.json); "
                              "give a StableVideoDiffusionPipeline saved with save_pretrained, e.g. a local copy of "
                              "stabilityai/stable-video-diffusion-img2vid-xt")  # fmt: skip
    try:
        from drrobot.compat import import_torchvision

        import_torchvision()
        from diffusers import StableVideoDiffusionPipeline
    except ImportError as err:
        raise VideoModelError(f"diffusers is not installed ({err}): pip install 'drrobot[video]'") from err
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    try:
        pipe = StableVideoDiffusionPipeline.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise VideoModelError(f"cannot load the video pipeline in {path}: {str(err).splitlines()[0][:300]}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate_frames(pipe, image: np.ndarray, settings: VideoGeneration) -> list[np.ndarray]:
    """Frames T x [height, width, 3] uint8 that the pipeline imagines after `image` [H, W, 3] uint8."""
    if settings.frames < 2 or settings.steps < 1 or settings.height % 8 or settings.width % 8:
        raise UsageError(f"--generate.frames must be >= 2, --generate.steps >= 1 and the size a multiple of 8 "
                         f"(got {settings.frames}, {settings.steps}, {settings.width}x{settings.height})")  # fmt: skip
    from PIL import Image

    condition = Image.fromarray(image).resize((settings.width, settings.height))
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    with torch.no_grad():
        video = pipe(condition, height=settings.height, width=settings.width, num_frames=settings.frames,
                     num_inference_steps=settings.steps, fps=settings.fps, motion_bucket_id=settings.motion_bucket_id,
                     decode_chunk_size=settings.decode_chunk_size, generator=generator, output_type="np").frames[0]  # fmt: skip
    return [(np.clip(f, 0.0, 1.0) * 255).round().astype(np.uint8) for f in np.asarray(video)]
