"""`drrobot pose`: a robot's joint angles (and the camera) from images, a video or a DREAM split.

    drrobot pose --checkpoint outputs/panda-model/checkpoint --dream path/to/panda-3cam_azure --out out/azure
    drrobot pose --checkpoint CKPT --video clip.mp4 --camera.fovy-deg 50 --out out/clip
    drrobot pose --checkpoint CKPT --images a.png b.png --camera.fx 600 --camera.fy 600 --camera.cx 320 --camera.cy 240

Writes to `--out`: `trajectory.json` (joints, camera, loss per frame), `overlay.mp4` (videos) or `overlay.png`
(images: the model rendered over the input), `joints.png` (each joint over time, with the ground truth when
known) and, for DREAM input, `metrics.json` + `metrics.md` (joint error, ADD, ADD-AUC, PCK-AUC, fps).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import tyro

from drrobot.apps.command import run_command
from drrobot.apps.visuals import overlay_frames, plot_joints, write_grid, write_video
from drrobot.checkpoint import load_checkpoint
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.data.dream import DreamFormatError, load_dream
from drrobot.io import ensure_writable_dir, write_atomic, write_json_atomic
from drrobot.fit.dream_eval import dream_truth, score_reconstruction
from drrobot.fit.frames import DreamFrames, FrameError, open_frames, read_mask
from drrobot.fit.reconstruct import ReconstructConfig, Reconstruction, reconstruct
from drrobot.fit.trajectory import read_pose_file, trajectory_dict, write_trajectory
from drrobot.vision.keypoint_net import DETECTOR_DIR, META_FILE, KeypointDetector

TRAJECTORY = "trajectory.json"


@dataclasses.dataclass
class CameraArgs:
    """The camera's intrinsics (pixels of the input frames) and, if known, its pose."""

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    """Principal point (default: the image centre)."""
    cy: float | None = None
    fovy_deg: float = 55.0
    """Vertical field of view used when fx/fy are not given (a guess; DREAM input brings its own intrinsics)."""
    viewmat: Path | None = None
    """JSON file with a known world->camera 4x4 matrix (OpenCV axes; the robot base is the world origin): the matrix
    itself, or an object holding it under "viewmat" (as `drrobot lookalike` writes `_ground_truth_camera.json`)."""


@dataclasses.dataclass
class PoseConfig:
    """Estimate joint angles and the camera from images, a video or a DREAM split."""

    checkpoint: Path
    """Trained model (`drrobot train` output, e.g. outputs/panda-model/checkpoint)."""
    out: Path = Path("outputs/pose")
    """Output directory."""
    images: tuple[Path, ...] = ()
    """Image files (each solved, then tracked in the given order)."""
    folder: Path | None = None
    """A folder of images, in name order."""
    video: Path | None = None
    """A video file (mp4, avi, mov, webm, ...)."""
    dream: Path | None = None
    """A DREAM-format split (Panda-3CAM): intrinsics and ground truth come from it."""
    masks: Path | None = None
    """Optional folder of robot masks named like the frames (`<frame>.png`; > 0 is robot)."""
    init_joints: Path | None = None
    """The first frame's joints, when known (e.g. from the robot's log): a JSON list in the model's joint order,
    a {joint name: value} object, or a trajectory.json (its first frame). Skips the joint search."""
    camera: CameraArgs = dataclasses.field(default_factory=CameraArgs)
    detector: Path | None = None
    """The robot's keypoint detector (`drrobot keypoints`); default: `<checkpoint>/../keypoint-detector` when it
    exists. Its detections start the first frame's joints (and camera, when unknown)."""
    use_detector: bool = True
    """False: ignore any detector (the template and chain search instead)."""
    stride: int = 1
    """Use every stride-th frame."""
    max_frames: int | None = None
    """Use at most this many frames."""
    device: str = "cpu"
    reconstruct: ReconstructConfig = dataclasses.field(default_factory=ReconstructConfig)
    overlay_fps: float = 10.0
    progress: bool = True


def run(config: PoseConfig) -> dict:
    """The whole job; returns the metrics (or {} without ground truth)."""
    sources = [f for f, v in (("--images", config.images), ("--folder", config.folder), ("--video", config.video),
                              ("--dream", config.dream)) if v]  # fmt: skip
    if len(sources) != 1:
        raise UsageError(f"give exactly one input: --images, --folder, --video or --dream (got {sources or 'none'})")
    check_output_dir(config.out)
    ckpt = load_checkpoint(config.checkpoint, device=resolve_device(config.device))
    model = ckpt.model.eval()
    sequence = truth = None
    if config.dream is not None:
        sequence = load_dream(config.dream, stride=config.stride, max_frames=config.max_frames)
        if not sequence.frames:
            raise DreamFormatError(f"DREAM folder {config.dream} has no frames")
        truth = dream_truth(sequence, model)
        frames, K = DreamFrames(sequence), torch.as_tensor(sequence.K, dtype=torch.float32)
    else:
        frames = open_frames(config.images, config.folder, config.video, config.stride, config.max_frames)
        K = intrinsics(config.camera, *np.asarray(frames[0]).shape[1::-1])
    masks = mask_reader(config.masks, frames) if config.masks else None
    viewmat = read_viewmat(config.camera.viewmat) if config.camera.viewmat else None
    joints = None
    if config.init_joints:
        joints = torch.as_tensor(read_pose_file(config.init_joints, model.joint_spec.names, "--init-joints"),
                                 dtype=torch.float32)  # fmt: skip
    detector = find_detector(config) if config.use_detector else None
    rec = reconstruct(model, frames, K, config.reconstruct, masks, viewmat, joints, detector, progress=config.progress)
    if rec.unplaced:
        print(f"drrobot pose: frame 0's keypoint detections cannot place {', '.join(rec.unplaced)} (a sweep over the "
              "whole travel barely moves the detected points): the values rest on the image and the prior alone; "
              "trajectory.json lists them under unplaced_joints", file=sys.stderr, flush=True)  # fmt: skip
    return write_outputs(config.out, model, frames, rec, truth, video=bool(config.video or config.dream),
                         fps=config.overlay_fps, width=config.reconstruct.working_width, title=str(config.dream))  # fmt: skip


def find_detector(config: PoseConfig) -> KeypointDetector | None:
    """The detector given, or the one next to the checkpoint; None (with a notice when the camera is unknown)."""
    if config.detector is not None:
        return KeypointDetector.load(config.detector)
    beside = Path(config.checkpoint).resolve().parent / DETECTOR_DIR
    if (beside / META_FILE).is_file():
        print(f"drrobot pose: using the keypoint detector {beside}", file=sys.stderr, flush=True)
        return KeypointDetector.load(beside)
    if config.camera.viewmat is None:
        print(UNKNOWN_CAMERA_NOTICE, file=sys.stderr, flush=True)
    return None


UNKNOWN_CAMERA_NOTICE = (
    "drrobot pose: the camera is unknown and there is no keypoint detector, so frame 0 is searched by templates; on "
    "cluttered scenes neither that search nor a `drrobot keypoints` detector finds the pose reliably yet "
    "(BENCHMARKS.md, pose estimation). Give --camera.viewmat when you know the camera (and --init-joints when your "
    "robot logs frame 0's joints)."
)


def intrinsics(camera: CameraArgs, width: int, height: int) -> torch.Tensor:
    """K [3, 3] from the given numbers, the field of view guess filling the rest; checked against the image."""
    f_guess = (height / 2) / math.tan(math.radians(camera.fovy_deg) / 2)
    fx = camera.fx or camera.fy or f_guess
    fy = camera.fy or camera.fx or f_guess
    cx = width / 2 if camera.cx is None else camera.cx
    cy = height / 2 if camera.cy is None else camera.cy
    if not (fx > 0 and fy > 0):
        raise UsageError(f"--camera.fx/--camera.fy must be positive, got {fx}, {fy}")
    if not (0 < cx < width and 0 < cy < height):
        raise UsageError(f"principal point ({cx}, {cy}) lies outside the {width}x{height} image: do the "
                         "intrinsics belong to images of another size?")  # fmt: skip
    return torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)


def read_viewmat(path: Path) -> torch.Tensor:
    """A 4x4 list, or an object with one under "viewmat" (as `drrobot lookalike` writes `_ground_truth_camera.json`)."""
    try:
        value = json.loads(Path(path).read_text())
        value = np.asarray(value["viewmat"] if isinstance(value, dict) else value, dtype=np.float64)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise UsageError(f"cannot read --camera.viewmat {path}: {err}") from err
    if value.shape != (4, 4) or not np.isfinite(value).all():
        raise UsageError(f"--camera.viewmat {path} must hold a finite 4x4 matrix, got shape {value.shape}")
    return torch.as_tensor(value, dtype=torch.float32)


def mask_reader(folder: Path, frames):
    """frame index -> mask [H, W] read from `folder/<frame name>.png` (or any image extension)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameError(f"mask folder {folder} does not exist")
    files = {p.stem: p for p in folder.iterdir() if p.is_file()}
    missing = [n for n in frames.names if n not in files]
    if missing:
        raise FrameError(f"mask folder {folder} has no mask for frame(s) {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''} (expected <frame>.png)")  # fmt: skip
    return lambda i: read_mask(files[frames.names[i]], np.asarray(frames[i]).shape[:2])


def check_output_dir(out: Path) -> None:
    """Fail before any work when `out` cannot be written."""
    try:
        ensure_writable_dir(out)
    except OSError as err:
        raise UsageError(f"--out {out} is not a writable directory ({err.strerror or err})") from err


def write_outputs(out: Path, model, frames, rec: Reconstruction, truth=None, video: bool = True, fps: float = 10.0,
                  width: int = 320, title: str = "") -> dict:  # fmt: skip
    """The overlay (mp4 for a `video`, else a PNG grid, `width` px wide), the joint plot, metrics against `truth`
    (a DREAM split's) and trajectory.json, last, so its presence means the run finished. Returns the metrics."""
    estimate = rec.joints.cpu().numpy()
    shown = overlay_frames(model, frames, rec.joints, rec.viewmats, rec.Ks, width)
    if video:
        write_video(out / "overlay.mp4", shown, fps)
    else:
        write_grid(out / "overlay.png", shown)
    plot_joints(out / "joints.png", model.joint_spec.names, estimate, None if truth is None else truth.joints,
                unplaced=rec.unplaced or ())  # fmt: skip
    metrics = {}
    if truth is not None and not rec.interrupted:  # interrupted: fewer frames than the ground truth
        scored = score_reconstruction(model, estimate, rec.viewmats.cpu().numpy(), rec.Ks.cpu().numpy(), truth, rec.fps)
        metrics = {**scored.to_dict(), "background": rec.background, "seconds_first_frame": rec.seconds_first,
                   "seconds_tracking": rec.seconds_track, "seconds_per_stage": rec.seconds_per_stage,
                   "unplaced_joints": rec.unplaced}  # fmt: skip
        write_json_atomic(out / "metrics.json", metrics)
        title = f"{title} ({len(rec.names)} frames, background {rec.background})"
        report = scored.to_markdown(title)
        if rec.unplaced:
            report += ("\nNot placed by frame 0's keypoint detections (the values rest on the image and the prior): "
                       f"{', '.join(rec.unplaced)}\n")  # fmt: skip
        write_atomic(out / "metrics.md", report.encode())
    size = np.asarray(frames[0]).shape[1::-1]  # (W, H)
    trajectory = trajectory_dict(model.joint_spec.names, rec.names, estimate, rec.viewmats, rec.Ks, rec.losses, size,
                                 rec.unplaced)  # fmt: skip
    write_trajectory(out / TRAJECTORY, trajectory)
    return metrics


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        config = tyro.cli(PoseConfig, args=argv, prog="drrobot pose", description=__doc__.splitlines()[0])
        metrics = run(config)
        if metrics:
            print(f"joint error {metrics['joint_error_deg']:.2f} deg, ADD-AUC {metrics['add_auc']:.3f}, "
                  f"{metrics['fps']:.2f} frames/s")  # fmt: skip
        print(f"wrote {config.out / TRAJECTORY}")

    return run_command("drrobot pose", job, interrupted="interrupted before the first frame was solved; nothing written")


if __name__ == "__main__":
    sys.exit(main())
