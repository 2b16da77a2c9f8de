"""`drrobot render`: a trained model as videos and frames people look at: a turntable, or a joint trajectory.

    drrobot render outputs/panda-model/checkpoint --out outputs/panda-turntable               # turntable.mp4/.gif
    drrobot render outputs/panda-model/checkpoint --trajectory out/azure/trajectory.json --camera trajectory
    drrobot render outputs/panda-model/checkpoint --trajectory traj.json --azimuths-deg 0 90 --ground-truth

Writes to `--out`: `<name>.mp4` and/or `<name>.gif`, and `frames/NNNNNN.png` (the exact rendered pixels),
where name is `turntable` or `trajectory`. Several cameras are tiled side by side; `--ground-truth` puts
MuJoCo's render of the robot's description (same poses and cameras) below the model's.
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
from drrobot.apps.visuals import write_frames, write_gif, write_video
from drrobot.checkpoint import load_checkpoint
from drrobot.device import resolve_device
from drrobot.errors import UsageError
from drrobot.fit.solve import prior_joints
from drrobot.fit.trajectory import read_pose_file, read_trajectory, trajectory_joints
from drrobot.io import ensure_writable_dir
from drrobot.model import RobotModel
from drrobot.renders import mujoco_frames, orbit_cameras, over, render_frames, robot_bounds, tile, to_uint8


@dataclasses.dataclass
class RenderConfig:
    """Render a trained model: a turntable at one pose, or a joint trajectory, to mp4/GIF and PNG frames."""

    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Checkpoint directory (e.g. outputs/panda-model/checkpoint)."""
    out: Path = Path("outputs/render")
    """Output directory (created)."""
    trajectory: Path | None = None
    """A trajectory.json (the layout `drrobot pose` writes): render its joints frame by frame. Without it: a
    turntable of one pose."""
    pose: Path | None = None
    """The turntable's pose: a JSON list in the model's joint order, a {joint name: radians} object or a
    trajectory.json (its first frame); default: the middle of every joint's range."""
    camera: Literal["orbit", "trajectory"] = "orbit"
    """orbit: cameras around the robot that keep it in view (a turntable turns them); trajectory: each frame's
    own camera from the trajectory file (its K at the input's resolution, scaled to --width)."""
    azimuths_deg: tuple[float, ...] = (30.0,)
    """Orbit cameras' azimuths around world +z (several: tiled side by side). A turntable starts each here."""
    elevation_deg: float = 20.0
    """Orbit cameras' angle above the robot's centre (positive: looking down)."""
    fovy_deg: float = 40.0
    """Orbit cameras' vertical field of view."""
    width: int = 320
    height: int = 320
    """Image size of each camera (--camera trajectory: the height follows the input's aspect ratio)."""
    frames: int = 72
    """Turntable frames (one full turn)."""
    fps: float = 24.0
    formats: tuple[Literal["mp4", "gif", "png"], ...] = ("mp4", "png")
    """What to write: an mp4 (H.264), a GIF, the PNG frames."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour (RGB in [0, 1]); MuJoCo's ground truth is always on black."""
    ground_truth: bool = False
    """Put MuJoCo's render of the robot (same poses, orbit cameras) below the model's."""
    appearance: bool = True
    """Render the pose-dependent appearance field (False: the canonical Gaussians' look)."""
    device: str = "cpu"
    progress: bool = True


def run(config: RenderConfig) -> list[Path]:
    """The whole job; returns the files written."""
    _check(config)
    ensure_writable_dir(config.out)
    model = load_checkpoint(config.checkpoint, device=resolve_device(config.device)).model.eval()
    joints, traj = _joints(config, model)  # [T, J]
    T = len(joints)
    if config.camera == "trajectory":
        viewmats, Ks, width, height = _trajectory_cameras(traj, config.width)  # [T, 1, 4, 4], [T, 1, 3, 3]
    else:
        viewmats, Ks, width, height = _orbit_cameras(config, model, joints)  # [T, C, 4, 4], [T, C, 3, 3]
    bar = tqdm(total=T * (2 if config.ground_truth else 1), desc="render", unit="frame", disable=not config.progress)
    with bar:
        rgba = render_frames(model, joints, viewmats, Ks, width, height, appearance=config.appearance,
                             progress=lambda _: bar.update())  # fmt: skip  [T, C, H, W, 4]
        shown = tile(to_uint8(over(rgba, torch.tensor(config.background))))  # [T, H, C * W, 3]
        if config.ground_truth:
            centre, _ = robot_bounds(model, joints)
            truth = mujoco_frames(model, joints, viewmats, width, height, config.fovy_deg, centre,
                                  progress=lambda _: bar.update())  # fmt: skip
            shown = np.concatenate([shown, tile(truth)], axis=1)  # model above, MuJoCo below
    name = "trajectory" if config.trajectory else "turntable"
    written = []
    if "mp4" in config.formats:
        written.append(write_video(config.out / f"{name}.mp4", shown, config.fps))
    if "gif" in config.formats:
        written.append(write_gif(config.out / f"{name}.gif", shown, config.fps))
    if "png" in config.formats:
        written += write_frames(config.out / "frames", shown)
    return written


def _check(config: RenderConfig) -> None:
    problems = []
    if config.width < 8 or config.height < 8:
        problems.append(f"--width/--height must be >= 8 (got {config.width}x{config.height})")
    if config.frames < 1:
        problems.append(f"--frames must be >= 1 (got {config.frames})")
    if not config.azimuths_deg:
        problems.append("--azimuths-deg needs at least one angle")
    if config.fps <= 0:
        problems.append(f"--fps must be positive (got {config.fps})")
    if not config.formats:
        problems.append("--formats needs at least one of mp4, gif, png")
    if config.camera == "trajectory" and config.trajectory is None:
        problems.append("--camera trajectory needs --trajectory")
    if config.camera == "trajectory" and config.ground_truth:
        problems.append("--ground-truth needs orbit cameras (--camera orbit)")
    if config.trajectory is not None and config.pose is not None:
        problems.append("give --trajectory or --pose, not both")
    if not all(0.0 <= c <= 1.0 for c in config.background):
        problems.append(f"--background must be RGB in [0, 1] (got {config.background})")
    if problems:
        raise UsageError("; ".join(problems))


def _joints(config: RenderConfig, model: RobotModel) -> tuple[torch.Tensor, dict | None]:
    """Joints [T, J] to render and the trajectory they came from (or None)."""
    names = model.joint_spec.names
    if config.trajectory is not None:
        traj = read_trajectory(config.trajectory)
        if not traj["names"]:
            raise UsageError(f"--trajectory {config.trajectory} has no frames")
        joints = torch.as_tensor(trajectory_joints(traj, names, config.trajectory), dtype=torch.float32)
        return model.check_joints(joints), traj
    middle = prior_joints(model, "middle")  # [J]
    pose = middle if config.pose is None else torch.as_tensor(read_pose_file(config.pose, names, "--pose"))
    return model.check_joints(pose.float().cpu()[None]).expand(config.frames, -1), None


def _orbit_cameras(config: RenderConfig, model: RobotModel, joints: torch.Tensor):
    """[T, C] orbit cameras: fixed for a trajectory, turning once around the robot for a turntable."""
    T, C = len(joints), len(config.azimuths_deg)
    turn = np.zeros(T) if config.trajectory else np.arange(T) * 360.0 / T  # [T]
    azimuths = (np.asarray(config.azimuths_deg)[None] + turn[:, None]).reshape(-1)  # [T * C]
    cams = orbit_cameras(model, joints, azimuths, config.width, config.height, config.elevation_deg, config.fovy_deg)
    return cams.viewmats.reshape(T, C, 4, 4), cams.Ks.reshape(T, C, 3, 3), config.width, config.height


def _trajectory_cameras(traj: dict, width: int):
    """Each frame's camera, K scaled from the input's size to `width` (a trajectory without `image_size`: the
    principal point is taken as the image centre)."""
    Ks = torch.as_tensor(traj["Ks"], dtype=torch.float32)  # [T, 3, 3]
    input_w, input_h = traj["image_size"] or (2 * float(Ks[0, 0, 2]), 2 * float(Ks[0, 1, 2]))
    height = max(8, round(width * input_h / input_w))
    scale = torch.tensor([width / input_w, height / input_h, 1.0])[:, None]
    viewmats = torch.as_tensor(traj["viewmats"], dtype=torch.float32)
    return viewmats[:, None], (Ks * scale)[:, None], width, height


def main(argv: list[str] | None = None) -> int:
    def job() -> None:
        config = tyro.cli(RenderConfig, args=argv, prog="drrobot render", description=__doc__.splitlines()[0])
        written = run(config)
        print(f"wrote {', '.join(str(p) for p in written[:3])}{' ...' if len(written) > 3 else ''} "
              f"({len(written)} files)")  # fmt: skip

    return run_command("drrobot render", job)


if __name__ == "__main__":
    sys.exit(main())
