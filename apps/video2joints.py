"""`drrobot video2joints`: a video of the robot (from a camera or a video model) -> an executable joint trajectory.

    drrobot video2joints outputs/panda-model/checkpoint --video clip.mp4 --out out/clip
    drrobot video2joints CKPT --generate.image first_frame.png --generate.model path/to/svd-xt --out out/imagined

The camera is unknown (solved on the first frame, then refined over the sequence); each frame is warm-started
from the previous one with a temporal smoothness term. Writes to `--out`: `trajectory.json` (the layout of
`drrobot pose`, written last), `trajectory.csv` (frame, then one column per joint, radians/metres),
`overlay.mp4` (the model over the input), `joints.png`, and `replay.mp4`: the input beside MuJoCo executing the
recovered trajectory from the recovered camera. Ctrl-C during tracking writes all of these for the frames tracked
so far. With `--generate.*` the frames come from a Stable Video Diffusion pipeline on disk (`generated.mp4`) and
are then reconstructed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm import tqdm

from drrobot.apps.command import run_command
from drrobot.apps.pose import TRAJECTORY, CameraArgs, check_output_dir, intrinsics, read_viewmat, write_outputs
from drrobot.apps.visuals import write_video
from drrobot.checkpoint import load_checkpoint
from drrobot.data.files import read_rgb8
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.fit.frames import ArrayFrames, open_frames
from drrobot.fit.reconstruct import ReconstructConfig, reconstruct, shrink
from drrobot.fit.solve import fast_motion_tracking

from drrobot.io import write_atomic
from drrobot.renders import mujoco_replay
from drrobot.vision.svd import VideoGeneration, generate_frames, load_video_pipeline


@dataclasses.dataclass
class GenerateArgs(VideoGeneration):
    """Generate the video first with a Stable Video Diffusion pipeline on disk."""

    image: Path | None = None
    """The first frame to condition the video model on."""
    model: Path | None = None
    """A StableVideoDiffusionPipeline folder (save_pretrained layout, e.g. a local stable-video-diffusion-img2vid-xt)."""


@dataclasses.dataclass
class Video2JointsArgs:
    """Recover the joint trajectory of a robot video and replay it in MuJoCo."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Trained model (e.g. outputs/panda-model/checkpoint)."""
    video: Path | None = None
    """A video file of the robot (mp4, avi, mov, webm, ...)."""
    generate: GenerateArgs = dataclasses.field(default_factory=GenerateArgs)
    out: Path = Path("outputs/video2joints")
    camera: CameraArgs = dataclasses.field(default_factory=CameraArgs)
    reconstruct: ReconstructConfig = dataclasses.field(
        default_factory=lambda: ReconstructConfig(track=fast_motion_tracking())
    )
    """Generated clips are short with large motion per frame: tracking defaults to `fast_motion_tracking()`."""
    stride: int = 1
    """Use every stride-th frame of --video."""
    max_frames: int | None = None
    replay: bool = True
    """Write replay.mp4 (the input beside MuJoCo executing the trajectory)."""
    fps: float = 10.0
    """Frame rate of the written videos."""
    device: str = "cpu"
    progress: bool = True


def run(args: Video2JointsArgs) -> Path:
    """The whole job; returns the trajectory file."""
    generating = args.generate.image is not None or args.generate.model is not None
    if (args.video is not None) == generating:
        raise UsageError("give either --video or --generate.image with --generate.model")
    if generating and (args.generate.image is None or args.generate.model is None):
        raise UsageError("generating a video needs both --generate.image and --generate.model")
    check_output_dir(args.out)
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, device=device).model.eval()
    if generating:
        pipe = load_video_pipeline(args.generate.model, device)
        frames = ArrayFrames(generate_frames(pipe, read_rgb8(args.generate.image), args.generate))
        write_video(args.out / "generated.mp4", frames.frames, args.fps)
    else:
        frames = open_frames(video=args.video, stride=args.stride, max_frames=args.max_frames)
    if len(frames) < 2:
        raise UsageError(f"the video has {len(frames)} frame(s); a trajectory needs at least 2 (for one image use "
                         "drrobot pose)")  # fmt: skip
    height, width = np.asarray(frames[0]).shape[:2]
    K = intrinsics(args.camera, width, height)
    viewmat = read_viewmat(args.camera.viewmat) if args.camera.viewmat else None
    if viewmat is None:
        print(UNKNOWN_CAMERA_NOTICE, file=sys.stderr, flush=True)
    rec = reconstruct(model, frames, K, args.reconstruct, viewmat=viewmat, progress=args.progress)
    write_csv(args.out / "trajectory.csv", model.joint_spec.names, rec.names, rec.joints.cpu().numpy())
    if args.replay:
        write_replay(args.out / "replay.mp4", model, frames, rec, args.reconstruct.working_width, args.fps,
                     args.progress)  # fmt: skip
    write_outputs(args.out, model, frames, rec, fps=args.fps, width=args.reconstruct.working_width)
    if rec.interrupted:
        print(f"interrupted: wrote the {len(rec.names)} of {len(frames)} frames tracked so far", file=sys.stderr)
    return args.out / TRAJECTORY


UNKNOWN_CAMERA_NOTICE = (
    "drrobot video2joints: the camera is unknown, so the first frame's camera and joints are searched from the image; "
    "on cluttered scenes that search often fails (BENCHMARKS.md, video to joints), and the trajectory is then wrong. "
    "Look at overlay.mp4 and replay.mp4, and give --camera.viewmat when you know the camera."
)


def write_csv(path: Path, joint_names, frame_names, joints: np.ndarray) -> Path:
    """frame, then one column per joint: joints [T, J]."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["frame", *joint_names])
    for name, row in zip(frame_names, joints):
        writer.writerow([name, *(f"{v:.6f}" for v in row)])
    write_atomic(path, buffer.getvalue().encode())
    return path


def write_replay(path: Path, model, frames, rec, width: int, fps: float, progress: bool) -> Path:
    """The input (shrunk to `width`) beside MuJoCo's render of the recovered joints from the recovered cameras."""
    H, W = np.asarray(frames[0]).shape[:2]
    height = max(2, round(H * width / W))
    K = rec.Ks[0].clone()
    K[:2] *= torch.tensor([width / W, height / H])[:, None]
    with tqdm(total=len(rec.names), desc="replay", unit="frame", disable=not progress) as bar:
        replay = mujoco_replay(model, rec.joints, rec.viewmats, K, width, height, progress=lambda _: bar.update())
    inputs = [(shrink(np.asarray(frames[t]), width, height).numpy() * 255).round().astype(np.uint8)
              for t in range(len(replay))]  # fmt: skip
    return write_video(path, [np.concatenate([a, b], axis=1) for a, b in zip(inputs, replay)], fps)


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        args = tyro.cli(Video2JointsArgs, args=argv, prog="drrobot video2joints", description=__doc__.splitlines()[0])
        print(f"wrote {run(args)}")

    return run_command("drrobot video2joints", job,
                       interrupted="interrupted before the first frame was solved; nothing written")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
