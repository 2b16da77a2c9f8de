"""`drrobot retarget`: drive a robot so that it moves like another embodiment's video (2D point tracks).

    drrobot retarget outputs/panda-model/checkpoint --video human_hand.mp4 --out out/hand
    drrobot retarget CKPT --video clip.mp4 --tracks clip_tracks.npz          # tracks made elsewhere
    drrobot retarget CKPT --video clip.mp4 --tracker cotracker --cotracker-checkpoint scaled_offline.pth
    drrobot retarget CKPT --video clip.mp4 --robot-tracks cotracker --cotracker-checkpoint scaled_offline.pth

Source tracks come from `--tracks` (an .npz with points [T, N, 2] pixels and visible [T, N]), CoTracker (when
installed, with a local checkpoint) or OpenCV's Lucas-Kanade tracker on corners of the source's moving
foreground (the default; no weights). The robot's own tracks are exact (its Gaussians projected) unless
`--robot-tracks cotracker` runs CoTracker on its renders and back-propagates through it, as the paper did. Writes
to `--out`: `trajectory.json` (the layout of `drrobot pose`, the robot's camera per frame; written last),
`tracks.npz` (the source tracks), `retarget.mp4` (source with its tracks | the robot with its own tracks),
`chamfer.png` (per frame, source pixels).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import tyro
from tqdm import tqdm

from drrobot.apps.command import run_command
from drrobot.apps.pose import check_output_dir
from drrobot.apps.visuals import plot_curve, write_video
from drrobot.checkpoint import load_checkpoint
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.fit.background import median_background, moving_foreground
from drrobot.fit.frames import open_frames
from drrobot.fit.retarget import RetargetConfig, retarget
from drrobot.fit.solve import prior_joints
from drrobot.fit.trajectory import trajectory_dict, write_trajectory
from drrobot.renders import orbit_cameras, over, render_frames, to_uint8
from drrobot.vision.tracks import Tracks, cotracker_render_tracker, import_cv2, track_points_cotracker, track_points_lk


@dataclasses.dataclass
class RobotView:
    """The camera the robot is seen (and its tracks projected) from: an orbit around it."""

    azimuth_deg: float = 0.0
    elevation_deg: float = 15.0
    width: int = 320
    height: int = 240


@dataclasses.dataclass
class RetargetArgs:
    """Retarget the motion in a video of another embodiment onto a trained robot model."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """The robot to drive (a trained model)."""
    video: Path | None = None
    """The source video (another robot, a human hand, ...)."""
    tracks: Path | None = None
    """Source tracks made elsewhere: .npz with points [T, N, 2] (pixels) and visible [T, N]."""
    tracker: Literal["lk", "cotracker"] = "lk"
    """Tracker of the source video (when --tracks is not given)."""
    robot_tracks: Literal["exact", "cotracker"] = "exact"
    """The robot's tracks: the exact projections of its Gaussians, or CoTracker run on its renders and
    back-propagated through (the paper's way; slower, needs --cotracker-checkpoint)."""
    cotracker_checkpoint: Path | None = None
    points: int = 256
    """Source points to track (LK: corners of the moving foreground)."""
    out: Path = Path("outputs/retarget")
    view: RobotView = dataclasses.field(default_factory=RobotView)
    fit: RetargetConfig = dataclasses.field(default_factory=RetargetConfig)
    max_frames: int | None = None
    fps: float = 10.0
    device: str = "cpu"
    progress: bool = True


def run(args: RetargetArgs) -> dict:
    if args.video is None:
        raise UsageError("--video is required (the source; its tracks are made from it or read from --tracks)")
    check_output_dir(args.out)
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, device=device).model.eval()
    tracker = None
    if args.robot_tracks == "cotracker":
        if args.cotracker_checkpoint is None:
            raise UsageError("--robot-tracks cotracker needs --cotracker-checkpoint (a local CoTracker .pth)")
        tracker = cotracker_render_tracker(args.cotracker_checkpoint, str(device))
    frames = open_frames(video=args.video, max_frames=args.max_frames)
    if len(frames) < 2:
        raise UsageError(f"the source video has {len(frames)} frame(s); retargeting a motion needs at least 2")
    source = source_tracks(args, [np.asarray(frames[t]) for t in range(len(frames))])
    middle = prior_joints(model, "middle")  # [J]
    view = args.view
    cams = orbit_cameras(model, middle[None], [view.azimuth_deg], view.width, view.height, view.elevation_deg)
    with tqdm(total=args.fit.steps, desc="retarget", unit="step", disable=not args.progress) as bar:
        result = retarget(model, source, cams.viewmats[0], cams.Ks[0], args.fit, lambda step, loss: bar.update(),
                          tracker, (view.width, view.height))  # fmt: skip
    source.save(args.out / "tracks.npz")
    write_side_by_side(args.out / "retarget.mp4", model, frames, source, result, cams, args.fps)
    plot_curve(args.out / "chamfer.png", result.chamfer_px.tolist(), "frame", "Chamfer distance (source px)",
               f"source tracks to the robot's: {result.coverage_px.mean():.2f} px on average")  # fmt: skip
    T = len(result.joints)
    trajectory = trajectory_dict(model.joint_spec.names, frames.names, result.joints.cpu().numpy(),
                                 cams.viewmats.expand(T, 4, 4), cams.Ks.expand(T, 3, 3), result.chamfer_px.numpy(),
                                 (view.width, view.height))  # fmt: skip
    write_trajectory(args.out / "trajectory.json", trajectory)
    return {"chamfer_px": float(result.chamfer_px.mean()), "coverage_px": float(result.coverage_px.mean()), "frames": T,
            "interrupted": result.interrupted}  # fmt: skip


def source_tracks(args: RetargetArgs, frames: list[np.ndarray]) -> Tracks:
    """The source's tracks: read, CoTracker's, or LK on corners of the moving foreground; checked against the video."""
    if args.tracks is not None:
        tracks = Tracks.load(args.tracks)
    elif args.tracker == "cotracker":
        if args.cotracker_checkpoint is None:
            raise UsageError("--tracker cotracker needs --cotracker-checkpoint (a local CoTracker .pth)")
        tracks = track_points_cotracker(frames, args.cotracker_checkpoint)
    else:
        video = torch.as_tensor(np.stack(frames)).float() / 255.0  # [T, H, W, 3]
        moving = (moving_foreground(video, median_background(video)) > 0.5).numpy()  # [T, H, W]
        masks = moving if moving.mean() > 0.002 else None  # nothing moves: the whole frame
        tracks = track_points_lk(frames, args.points, masks)
    if len(tracks.points) != len(frames):
        raise UsageError(f"the tracks cover {len(tracks.points)} frames but the video has {len(frames)}: they must "
                         "be of the same video (use --max-frames or re-track)")  # fmt: skip
    return tracks


def write_side_by_side(path: Path, model, frames, source: Tracks, result, cams, fps: float) -> Path:
    """Source frame with its tracks | the robot at the retargeted joints with its own tracks."""
    cv2 = import_cv2()

    T = len(result.joints)
    W, H = cams.width, cams.height
    rgba = render_frames(model, result.joints, cams.viewmats[None].expand(T, 1, 4, 4),
                         cams.Ks[None].expand(T, 1, 3, 3), W, H)  # fmt: skip  [T, 1, H, W, 4]
    robot = to_uint8(over(rgba[:, 0], torch.ones(3)))  # [T, H, W, 3]
    shown = []
    for t in range(T):
        frame = np.ascontiguousarray(frames[t])
        scale = H / frame.shape[0]
        left = cv2.resize(frame, (max(2, round(frame.shape[1] * scale)), H), interpolation=cv2.INTER_AREA)
        for (x, y), seen in zip(source.points[t], source.visible[t]):
            if seen:
                cv2.circle(left, (int(x * scale), int(y * scale)), 2, (255, 60, 60), -1)
        right = np.ascontiguousarray(robot[t])
        for x, y in result.robot_points[t].cpu().numpy()[::4]:
            cv2.circle(right, (int(x), int(y)), 1, (40, 90, 255), -1)
        shown.append(np.concatenate([left, right], axis=1))
    return write_video(path, shown, fps)


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        args = tyro.cli(RetargetArgs, args=argv, prog="drrobot retarget", description=__doc__.splitlines()[0])
        summary = run(args)
        if summary["interrupted"]:
            print("interrupted: wrote the trajectory fitted so far")
        print(f"{summary['frames']} frames; Chamfer {summary['chamfer_px']:.2f} source px (source tracks to the "
              f"robot's: {summary['coverage_px']:.2f} px); wrote {args.out / 'trajectory.json'}")  # fmt: skip

    return run_command("drrobot retarget", job)


if __name__ == "__main__":
    sys.exit(main())
