"""`drrobot render`: its frames are `RobotModel.render`'s pixels, its videos decode to them, bad input is a
clear error."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from model_fixtures import cameras, make_model

from drrobot.apps.cli import main as drrobot_main
from drrobot.checkpoint import save_checkpoint
from drrobot.fit.trajectory import trajectory_dict, write_trajectory
from drrobot.renders import orbit_cameras


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = make_model("toy_arm", n=300, sh_degree=1)
    return save_checkpoint(tmp_path_factory.mktemp("render") / "checkpoint", model), model


def _expected(model, joints, viewmats, Ks, size, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """[T, H, W, 3] uint8: RobotModel.render over `background`, one frame per pose."""
    with torch.no_grad():
        out = model.render(joints, viewmats, Ks, size[0], size[1], background=torch.tensor(background).expand(3))
    return (out.images[:, 0].clamp(0, 1) * 255).round().byte().numpy()


def test_turntable_frames_are_the_models_render(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    argv = ["render", str(path), "--out", str(tmp_path), "--frames", "4", "--width", "48", "--height", "40",
            "--formats", "png", "mp4", "gif", "--no-progress"]  # fmt: skip
    assert drrobot_main(argv) == 0, capsys.readouterr().err
    middle = 0.5 * (model.joint_lower + model.joint_upper)
    joints = middle.expand(4, -1)
    cams = orbit_cameras(model, joints, 30.0 + np.arange(4) * 90.0, 48, 40)
    expected = _expected(model, joints, cams.viewmats[:, None], cams.Ks[:, None], (48, 40))
    frames = np.stack([iio.imread(tmp_path / "frames" / f"{t:06d}.png") for t in range(4)])
    assert frames.shape == (4, 40, 48, 3)
    assert np.abs(frames.astype(int) - expected).max() <= 1
    assert (frames < 200).any(axis=-1).mean() > 0.02  # the robot is drawn, not just background
    assert not np.array_equal(frames[0], frames[2])  # the table turns
    video = iio.imread(tmp_path / "turntable.mp4")  # [T, H, W, 3] through imageio-ffmpeg
    assert video.shape[0] == 4 and np.abs(video.astype(float) - expected).mean() < 6.0  # H.264 is lossy
    assert iio.imread(tmp_path / "turntable.gif").shape[0] == 4


def test_trajectory_with_its_own_cameras(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    T = 3
    low, high = model.joint_lower, model.joint_upper
    joints = low + (high - low) * torch.linspace(0.2, 0.8, T)[:, None]  # [T, J]
    viewmats, Ks = cameras(T, size=64)  # input frames of 64 x 64
    traj = trajectory_dict(list(reversed(model.joint_spec.names)), [f"{t}" for t in range(T)], joints.flip(-1),
                           viewmats[:, 0], Ks[:, 0], np.zeros(T), image_size=(64, 64))  # fmt: skip
    write_trajectory(tmp_path / "trajectory.json", traj)  # joints stored in another order: matched by name
    argv = ["render", str(path), "--trajectory", str(tmp_path / "trajectory.json"), "--camera", "trajectory",
            "--width", "32", "--out", str(tmp_path / "out"), "--formats", "png", "--no-progress"]  # fmt: skip
    assert drrobot_main(argv) == 0, capsys.readouterr().err
    Ks_32 = Ks[:, :1].clone()
    Ks_32[..., :2, :] *= 0.5
    expected = _expected(model, joints, viewmats[:, :1], Ks_32, (32, 32))
    frames = np.stack([iio.imread(tmp_path / "out" / "frames" / f"{t:06d}.png") for t in range(T)])
    assert np.abs(frames.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--camera", "trajectory"], 2, "--camera trajectory needs --trajectory"),
        (["--frames", "0"], 2, "--frames must be >= 1"),
        (["--trajectory", "{traj}"], 1, "is it for another robot?"),
        (["--trajectory", "{missing}"], 1, "cannot read trajectory"),
        (["--out", "/proc/x"], 1, "/proc/x"),
    ],
)
def test_bad_input(checkpoint, tmp_path, capsys, args, code, message):
    path, _ = checkpoint
    traj = tmp_path / "other_robot.json"
    traj.write_text(json.dumps({"joint_names": ["a"], "frames": [{"frame": "0", "joints": [0.0], "viewmat": np.eye(4).tolist(),
                                                                  "K": np.eye(3).tolist(), "loss": 0.0}]}))  # fmt: skip
    args = [a.format(traj=traj, missing=tmp_path / "missing.json") for a in args]
    argv = ["render", str(path), "--out", str(tmp_path / "o"), "--no-progress", *args]
    assert drrobot_main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

