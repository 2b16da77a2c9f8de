"""Retargeting: LK tracks follow a rendered video's known points, a robot retargeted onto tracks of its own
(MuJoCo-rendered) video matches them, another embodiment gets a valid trajectory, `drrobot retarget` writes its
outputs and refuses bad input clearly."""

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from fit_helpers import TOY_TARGET, surface_model

pytest.importorskip("cv2", reason="opencv-python-headless is not installed")

from drrobot.apps.cli import main as cli_main  # noqa: E402
from drrobot.checkpoint import save_checkpoint  # noqa: E402
from drrobot.errors import UsageError  # noqa: E402
from drrobot.fit.cameras import Cameras, look_at  # noqa: E402
from drrobot.fit.retarget import RetargetConfig, chamfer_2d, retarget, robot_track_ids, robot_tracks  # noqa: E402
from drrobot.renders import mujoco_replay, orbit_cameras  # noqa: E402
from drrobot.vision.tracks import Tracks, track_points_lk  # noqa: E402

T = 8


def toy_motion() -> torch.Tensor:
    """[T, 3] yaw, shoulder, elbow: a smooth swing."""
    s = torch.linspace(0, 1, T)[:, None]
    return torch.tensor([[0.1, -0.5, 0.9]]) + s * torch.tensor([[0.3, 0.9, -0.8]])


@pytest.fixture(scope="module")
def arm():
    return surface_model("toy_arm", points=1500)


def test_lk_follows_known_points(arm):
    W, H = 160, 120
    cam = Cameras.from_fov(50.0, W, H, look_at(torch.tensor([-0.5, 1.3, 0.8]), torch.tensor(TOY_TARGET)))
    joints = toy_motion()
    with torch.no_grad():
        out = arm.render(joints, cam.viewmats.expand(T, 1, 4, 4), cam.Ks.expand(T, 1, 3, 3), W, H,
                         render_mode="RGB+ED", background=torch.full((3,), 0.1))  # fmt: skip
    frames = (out.images[:, 0].clamp(0, 1) * 255).round().byte().numpy()
    ids = robot_track_ids(arm, 400)
    with torch.no_grad():
        truth = robot_tracks(arm, joints, ids, cam.viewmats, cam.Ks).numpy()  # [T, M, 2]
        means = arm.pose_gaussians(joints[:1], appearance=False).means[0, ids]  # [M, 3]
        depth = (means @ cam.viewmats[:3, :3].T + cam.viewmats[:3, 3])[:, 2]
    x, y = np.clip(truth[0].astype(int), 0, [W - 1, H - 1]).T
    front = np.abs(depth.numpy() - out.depths[0, 0, y, x, 0].numpy()) < 0.02  # visible in frame 0
    tracks = track_points_lk(list(frames), queries=truth[0, front])
    kept = tracks.visible.all(0)
    error = np.linalg.norm(tracks.points[:, kept] - truth[:, front][:, kept], axis=-1)  # [T, K]
    assert kept.mean() > 0.5 and np.median(error) < 1.5, (kept.mean(), np.median(error))  # stated: median < 1.5 px


@pytest.fixture(scope="module")
def source_video(arm):
    """The toy arm's motion rendered by MuJoCo from an orbit camera (azimuth 100 deg), 200 x 150 px."""
    joints = toy_motion()
    cams = orbit_cameras(arm, joints, [100.0], 200, 150, elevation_deg=15.0)
    frames = mujoco_replay(arm, joints, cams.viewmats.expand(T, 4, 4), cams.Ks[0], 200, 150)
    return frames, joints


def test_self_retargeting_matches_tracks_and_joints(arm, source_video):
    frames, truth = source_video
    tracks = track_points_lk(list(frames), num_points=200)
    middle = 0.5 * (arm.joint_lower + arm.joint_upper)
    view = orbit_cameras(arm, middle[None], [100.0], 320, 240, elevation_deg=15.0)  # same view, other size
    result = retarget(arm, tracks, view.viewmats[0], view.Ks[0], RetargetConfig(steps=250, points=300))
    # Stated bounds (measured: 2.1 px, 9.4 degrees): every source track within 3.5 px of the robot's tracks on
    # average (trackers follow corners, the robot's tracks cover its surface, so the symmetric Chamfer stays
    # near 6 px), shoulder and elbow (which swing in the view's plane) within 15 degrees on average.
    assert result.coverage_px.mean() < 3.5, result.coverage_px
    error = torch.rad2deg((result.joints - truth)[:, 1:].abs()).mean()  # shoulder, elbow (in the view's plane)
    assert error < 15.0, result.joints


def test_cross_embodiment_gives_a_valid_trajectory(source_video):
    frames, _ = source_video
    gripper = surface_model("toy_gripper", points=1200)
    tracks = track_points_lk(list(frames), num_points=150)
    middle = torch.nan_to_num(0.5 * (gripper.joint_lower + gripper.joint_upper))
    view = orbit_cameras(gripper, middle[None], [100.0], 200, 150)
    start = retarget(gripper, tracks, view.viewmats[0], view.Ks[0], RetargetConfig(steps=1, lr=1e-6))
    result = retarget(gripper, tracks, view.viewmats[0], view.Ks[0], RetargetConfig(steps=150, points=300))
    assert result.joints.shape == (T, 3) and torch.isfinite(result.joints).all()
    assert ((result.joints >= gripper.joint_lower - 1e-5) & (result.joints <= gripper.joint_upper + 1e-5)).all()
    assert result.coverage_px.mean() < start.coverage_px.mean()


def test_chamfer_ignores_invisible_points():
    a = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    b = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [50.0, 50.0]]])
    assert chamfer_2d(a, b, torch.tensor([[True, True, False]])).item() == 0.0
    assert chamfer_2d(a, b, torch.tensor([[True, True, True]])).item() > 0.0


@pytest.fixture(scope="module")
def cli_inputs(arm, source_video, tmp_path_factory):
    folder = tmp_path_factory.mktemp("retarget")
    frames, _ = source_video
    iio.imwrite(folder / "source.mp4", frames, fps=10, codec="libx264", macro_block_size=1, quality=9)
    iio.imwrite(folder / "one.mp4", frames[:1], fps=10, codec="libx264", macro_block_size=1)
    Tracks(np.zeros((3, 5, 2), np.float32), np.ones((3, 5), bool)).save(folder / "short.npz")
    return save_checkpoint(folder / "checkpoint", arm), folder


def test_cli_writes_its_outputs(cli_inputs, tmp_path, capsys):
    checkpoint, folder = cli_inputs
    argv = ["retarget", str(checkpoint), "--video", str(folder / "source.mp4"), "--out", str(tmp_path),
            "--fit.steps", "20", "--view.width", "96", "--view.height", "72", "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0, capsys.readouterr().err
    trajectory = json.loads((tmp_path / "trajectory.json").read_text())
    assert len(trajectory["frames"]) == T and trajectory["joint_names"] == ["yaw", "shoulder", "elbow"]
    video = iio.imread(tmp_path / "retarget.mp4")
    assert video.shape[0] == T and video.shape[1] == 72
    assert Tracks.load(tmp_path / "tracks.npz").points.shape[0] == T and (tmp_path / "chamfer.png").is_file()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--video", "{f}/source.mp4", "--tracks", "{f}/short.npz"], 2, "the tracks cover 3 frames but the video has 8"),
        (["--video", "{f}/one.mp4"], 2, "needs at least 2"),
        (["--video", "{f}/missing.mp4"], 1, "does not exist"),
        (["--video", "{f}/source.mp4", "--tracker", "cotracker"], 2, "--cotracker-checkpoint"),
        (["--video", "{f}/source.mp4", "--robot-tracks", "cotracker"], 2, "--robot-tracks cotracker needs"),
        (["--video", "{f}/source.mp4", "--robot-tracks", "cotracker", "--cotracker-checkpoint", "{f}/none.pth"], 1,
         "CoTracker is not installed"),
        ([], 2, "--video is required"),
    ],
)
def test_cli_bad_input(cli_inputs, tmp_path, capsys, args, code, message):
    checkpoint, folder = cli_inputs
    argv = ["retarget", str(checkpoint), "--out", str(tmp_path), "--no-progress", *[a.format(f=folder) for a in args]]
    assert cli_main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def soft_argmax_tracker(video: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """A tiny differentiable tracker standing in for CoTracker: each query's 5x5 grey patch in frame 0 is found
    in every frame by normalised correlation and a soft-argmax. video [T, H, W, 3], queries [N, 3] -> [T, N, 2]."""
    T, H, W, _ = video.shape
    patches = torch.nn.functional.unfold(video.mean(-1)[:, None], 5, padding=2)  # [T, 25, H W]
    patches = patches - patches.mean(1, keepdim=True)
    patches = patches / patches.norm(dim=1, keepdim=True).clamp_min(1e-3)
    index = (queries[:, 2] - 0.5).long() * W + (queries[:, 1] - 0.5).long()  # [N] (all queries in frame 0)
    templates = patches[0][:, index]  # [25, N]
    weights = torch.softmax(torch.einsum("kn,tkp->tnp", templates, patches) / 0.05, dim=-1)  # [T, N, H W]
    y, x = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return torch.stack([weights @ x.flatten(), weights @ y.flatten()], dim=-1)


def test_a_differentiable_tracker_on_the_robots_renders_drives_the_joints(arm):
    """The paper's robot side (a tracker on the renders, back-propagated through) with a stand-in tracker: from
    the middle pose, the trajectory moves so the robot's tracked points match the source's."""
    W, H = 64, 48
    truth = toy_motion()[::3]  # [3, 3]
    view = orbit_cameras(arm, truth, [100.0], W, H, elevation_deg=15.0)
    ids = robot_track_ids(arm, 200)
    with torch.no_grad():
        source = robot_tracks(arm, truth, ids, view.viewmats[0], view.Ks[0])  # [3, M, 2]
    tracks = Tracks(source.numpy(), np.ones(source.shape[:2], dtype=bool))
    config = RetargetConfig(steps=40, points=48, render_size=W, lr=0.05)
    start = retarget(arm, tracks, view.viewmats[0], view.Ks[0], dataclasses.replace(config, steps=1),
                     tracker=soft_argmax_tracker, image_size=(W, H))  # fmt: skip
    result = retarget(arm, tracks, view.viewmats[0], view.Ks[0], config, tracker=soft_argmax_tracker,
                      image_size=(W, H))  # fmt: skip
    # Stated bounds (measured on an AVX-512 host: the lowest loss -22%, source-to-robot distance 2.53 -> 1.85 px):
    # the gradients through the renders and the tracker lower the objective and bring the robot's tracked points
    # nearer the source's. The stand-in is a poor tracker (the objective is noisy: there the last step's loss was
    # back where it started), so the lowest-objective trajectory is returned, and joint accuracy is not judged
    # here (the exact robot side's tests do that).
    assert min(result.history) < 0.9 * result.history[0], result.history
    assert result.coverage_px.mean() < 0.85 * start.coverage_px.mean(), (start.coverage_px, result.coverage_px)
    with pytest.raises(UsageError, match="image_size"):
        retarget(arm, tracks, view.viewmats[0], view.Ks[0], config, tracker=soft_argmax_tracker)


def test_ctrl_c_keeps_the_trajectory_so_far(arm, source_video):
    frames, _ = source_video
    tracks = track_points_lk(list(frames), num_points=100)
    view = orbit_cameras(arm, (0.5 * (arm.joint_lower + arm.joint_upper))[None], [100.0], 200, 150)

    def stop_at_step_3(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    result = retarget(arm, tracks, view.viewmats[0], view.Ks[0], RetargetConfig(steps=50, points=100), stop_at_step_3)
    assert result.interrupted and len(result.history) == 4 and torch.isfinite(result.joints).all()


def test_compact_visible_keeps_each_frames_visible_points():
    from drrobot.fit.retarget import compact_visible

    points = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    visible = torch.tensor([[False, True, False], [True, False, True]])
    kept, mask = compact_visible(points, visible)
    assert kept.shape == (2, 2, 2) and mask.tolist() == [[True, False], [True, True]]
    assert kept[0, 0].tolist() == [2.0, 3.0] and kept[1].tolist() == [[6.0, 7.0], [10.0, 11.0]]
