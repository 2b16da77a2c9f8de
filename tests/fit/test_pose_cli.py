"""`drrobot pose` end to end on tiny inputs (a toy-arm DREAM sequence, image files), its outputs, and clear
errors for bad input that leave no trajectory behind."""

import dataclasses
import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from fit_helpers import DARK_BACKGROUND, render_frames, surface_model, toy_camera

from drrobot.apps.cli import main as cli_main
from drrobot.checkpoint import save_checkpoint
from drrobot.data.lookalike import LookalikeConfig, generate
from drrobot.fit.trajectory import read_trajectory

TINY = [
    "--reconstruct.working-width", "64", "--reconstruct.scratch.placement.azimuths", "4",
    "--reconstruct.scratch.placement.elevations-deg", "20", "--reconstruct.scratch.poses", "2",
    "--reconstruct.scratch.cameras", "2",
    "--reconstruct.scratch.chain.values", "3", "--reconstruct.scratch.chain.beam", "2",
    "--reconstruct.scratch.chain.steps", "2", "--reconstruct.scratch.finalists", "1",
    "--reconstruct.scratch.final.steps", "3", "--reconstruct.track.fit.steps", "3",
    "--reconstruct.track.keyframes", "2", "--reconstruct.track.camera-fit.steps", "2", "2",
    "--reconstruct.median-min-frames", "3", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", surface_model("toy_arm", points=600))


@pytest.fixture(scope="module")
def toy_dream(tmp_path_factory):
    """A 3-frame toy-arm sequence in the DREAM format (80x60 px)."""
    out = tmp_path_factory.mktemp("dream") / "toy"
    config = LookalikeConfig(out=out, robot="toy_arm", prefix="toy", keypoint_bodies=("link1", "link2", "tool"),
                             joints=("yaw", "shoulder", "elbow"), frames=3, scale=0.125, waypoints=(2, 2))  # fmt: skip
    generate(config, progress=False)
    return out


def pose(*args) -> int:
    return cli_main(["pose", *map(str, args)])


def test_dream_sequence_end_to_end(toy_checkpoint, toy_dream, tmp_path, capsys):
    out = tmp_path / "out"
    assert pose("--checkpoint", toy_checkpoint, "--dream", toy_dream, "--out", out, *TINY) == 0
    assert "the camera is unknown" in capsys.readouterr().err  # the user hears that the weak path is taken
    trajectory = json.loads((out / "trajectory.json").read_text())
    assert trajectory["joint_names"] == ["yaw", "shoulder", "elbow"]
    assert [f["frame"] for f in trajectory["frames"]] == ["000000", "000001", "000002"]
    assert "unplaced_joints" not in trajectory  # no detector: nothing to say which joints it could not place
    frame = trajectory["frames"][0]
    assert set(frame) == {"frame", "joints", "viewmat", "K", "loss"}
    assert np.array(frame["viewmat"]).shape == (4, 4) and np.array(frame["K"]).shape == (3, 3)
    assert np.allclose(np.array(frame["K"])[0, 0], json.loads((toy_dream / "_camera_settings.json").read_text())
                       ["camera_settings"][0]["intrinsic_settings"]["fx"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"joint_error_deg", "add_mm", "add_auc", "pck_auc", "fps"} <= set(metrics)
    assert metrics["frames"] == 3 and metrics["background"] == "median"
    assert "joint error" in (out / "metrics.md").read_text()
    video = iio.imread(out / "overlay.mp4")
    assert video.shape[0] == 3 and video.shape[-1] == 3
    assert iio.imread(out / "joints.png").ndim == 3
    assert read_trajectory(out / "trajectory.json")["joints"].shape == (3, 3)


def test_images_with_a_known_camera(toy_checkpoint, tmp_path, capsys):
    model = surface_model("toy_arm", points=600)
    cam = toy_camera(64, 48)
    frames = render_frames(model, torch.tensor([[0.4, 0.6, -0.9], [0.5, 0.5, -0.8]]), cam, DARK_BACKGROUND)
    paths = []
    for k, frame in enumerate(frames):
        paths.append(tmp_path / f"shot{k}.png")
        iio.imwrite(paths[-1], frame)
    (tmp_path / "viewmat.json").write_text(json.dumps(cam.viewmats.tolist()))
    K = cam.Ks
    out = tmp_path / "out"
    code = pose("--checkpoint", toy_checkpoint, "--images", *paths, "--out", out, "--camera.fx", float(K[0, 0]),
                "--camera.viewmat", tmp_path / "viewmat.json", *TINY)  # fmt: skip
    assert code == 0
    assert "the camera is unknown" not in capsys.readouterr().err
    trajectory = read_trajectory(out / "trajectory.json")
    assert trajectory["names"] == ["shot0", "shot1"]
    assert np.allclose(trajectory["viewmats"][0], cam.viewmats.numpy(), atol=1e-5)  # a known camera stays put
    assert iio.imread(out / "overlay.png").shape[-1] == 3
    assert not (out / "metrics.json").exists()  # no ground truth


def _bad(capsys, *args) -> tuple[int, str]:
    code = pose(*args)
    return code, capsys.readouterr().err


def test_bad_dream_folders(toy_checkpoint, toy_dream, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "empty"
    missing.mkdir()
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--dream", missing, "--out", out, *TINY)
    assert code == 1 and "_camera_settings.json" in err
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for f in toy_dream.iterdir():
        text = f.read_bytes()
        if f.suffix == ".json" and f.name[0].isdigit():
            text = text.replace(b"toy/", b"other/").replace(b'"yaw"', b'"foo"').replace(b'"shoulder"', b'"bar"')
            text = text.replace(b"_yaw", b"_foo").replace(b"_shoulder", b"_bar").replace(b"_elbow", b"_baz")
        (renamed / f.name).write_bytes(text)
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--dream", renamed, "--out", out, *TINY)
    assert code == 1 and "match" in err
    assert not (out / "trajectory.json").exists()


def test_checkpoint_of_another_robot(toy_dream, tmp_path, capsys):
    gripper = save_checkpoint(tmp_path / "gripper", surface_model("toy_gripper", points=200))
    code, err = _bad(capsys, "--checkpoint", gripper, "--dream", toy_dream, "--out", tmp_path / "out", *TINY)
    assert code == 1 and "match" in err


def test_bad_videos_masks_intrinsics_and_outputs(toy_checkpoint, tmp_path, capsys):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video")
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--video", video, "--out", tmp_path / "o1", *TINY)
    assert code == 1 and "broken.mp4" in err
    image = tmp_path / "frame.png"
    iio.imwrite(image, np.zeros((48, 64, 3), np.uint8))
    masks = tmp_path / "masks"
    masks.mkdir()
    iio.imwrite(masks / "frame.png", np.zeros((10, 10), np.uint8))
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--images", image, "--masks", masks, "--out",
                     tmp_path / "o2", *TINY)  # fmt: skip
    assert code == 1 and "mask" in err and "10x10" in err
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--images", image, "--camera.cx", "640", "--out",
                     tmp_path / "o3", *TINY)  # fmt: skip
    assert code == 2 and "outside" in err
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--images", image, "--out", "/proc/drrobot", *TINY)
    assert code == 2 and "--out" in err
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--out", tmp_path / "o4", *TINY)
    assert code == 2 and "exactly one" in err


def test_known_initial_joints_skip_the_search(toy_checkpoint, tmp_path, capsys):
    model = surface_model("toy_arm", points=600)
    cam = toy_camera(64, 48)
    truth = torch.tensor([[0.4, 0.6, -0.9]])
    image = tmp_path / "shot.png"
    iio.imwrite(image, render_frames(model, truth, cam, DARK_BACKGROUND)[0])
    (tmp_path / "viewmat.json").write_text(json.dumps(cam.viewmats.tolist()))
    (tmp_path / "init.json").write_text(json.dumps({"yaw": 0.4, "shoulder": 0.6, "elbow": -0.9}))
    common = ["--checkpoint", toy_checkpoint, "--images", image, "--camera.fx", float(cam.Ks[0, 0]),
              "--camera.viewmat", tmp_path / "viewmat.json", *TINY]  # fmt: skip
    assert pose(*common, "--out", tmp_path / "out", "--init-joints", tmp_path / "init.json") == 0
    joints = read_trajectory(tmp_path / "out" / "trajectory.json")["joints"][0]
    assert np.abs(joints - truth[0].numpy()).max() < np.deg2rad(3)  # stays at the right answer
    (tmp_path / "bad.json").write_text(json.dumps({"yaw": 0.4}))
    code, err = _bad(capsys, *common, "--out", tmp_path / "o2", "--init-joints", tmp_path / "bad.json")
    assert code == 2 and "shoulder" in err


def test_a_keypoint_detector_is_used_and_a_missing_one_named(toy_checkpoint, toy_dream, tmp_path, capsys):
    from drrobot.fit.keypoint_points import robot_keypoints
    from drrobot.vision.keypoint_net import KeypointDetector, KeypointNet, NetConfig

    model = surface_model("toy_arm", points=600)
    spec = robot_keypoints(model, min_gaussians=20)
    config = NetConfig(channels=(4, 4, 4, 4), input_width=32, input_height=24)
    KeypointDetector(KeypointNet(spec.count, config), spec, config).save(tmp_path / "det")  # random weights
    out = tmp_path / "out"
    assert pose("--checkpoint", toy_checkpoint, "--dream", toy_dream, "--out", out, "--detector", tmp_path / "det",
                *TINY) == 0  # fmt: skip
    assert "the camera is unknown" not in capsys.readouterr().err
    trajectory = json.loads((out / "trajectory.json").read_text())
    assert len(trajectory["frames"]) == 3
    assert set(trajectory["unplaced_joints"]) <= {"yaw", "shoulder", "elbow"}
    assert json.loads((out / "metrics.json").read_text())["unplaced_joints"] == trajectory["unplaced_joints"]
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--dream", toy_dream, "--out", tmp_path / "o2",
                     "--detector", tmp_path / "nothing", *TINY)  # fmt: skip
    assert code == 1 and "nothing" in err and "drrobot keypoints" in err
    assert not (tmp_path / "o2" / "trajectory.json").exists()
    other = dataclasses.replace(spec, robot="panda", link_names=("hand",) * spec.count)
    KeypointDetector(KeypointNet(spec.count, config), other, config).save(tmp_path / "panda-det")
    code, err = _bad(capsys, "--checkpoint", toy_checkpoint, "--dream", toy_dream, "--out", tmp_path / "o3",
                     "--detector", tmp_path / "panda-det", *TINY)  # fmt: skip
    assert code == 1 and "'panda'" in err and "hand" in err


def test_a_known_camera_is_read_as_a_matrix_or_from_a_lookalike_camera_file(tmp_path):
    from drrobot.apps.pose import read_viewmat
    from drrobot.errors import UsageError

    matrix = torch.eye(4)
    matrix[2, 3] = 1.5
    (tmp_path / "plain.json").write_text(json.dumps(matrix.tolist()))
    (tmp_path / "lookalike.json").write_text(json.dumps({"viewmat": matrix.tolist(), "K": torch.eye(3).tolist()}))
    (tmp_path / "other.json").write_text(json.dumps({"pose": matrix.tolist()}))
    assert torch.equal(read_viewmat(tmp_path / "plain.json"), matrix)
    assert torch.equal(read_viewmat(tmp_path / "lookalike.json"), matrix)
    with pytest.raises(UsageError, match="other.json"):
        read_viewmat(tmp_path / "other.json")


def test_a_joint_that_does_not_move_is_plotted_flat():
    """Float noise on a still joint (a gripper's finger) is not magnified to fill its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drrobot.apps.visuals import MIN_PLOT_SPAN, _at_least_span

    fig, ax = plt.subplots()
    ax.plot([0.0396, 0.03960001, 0.0396])
    _at_least_span(ax, MIN_PLOT_SPAN)
    low, high = ax.get_ylim()
    plt.close(fig)
    assert high - low >= MIN_PLOT_SPAN * 0.999 and low < 0.0396 < high


def test_the_joint_plot_marks_the_joints_the_detections_cannot_place(tmp_path, monkeypatch):
    from drrobot.apps import visuals

    titles = []

    def keep_titles(path, fig):
        titles.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        return path

    monkeypatch.setattr(visuals, "_save_figure", keep_titles)
    visuals.plot_joints(tmp_path / "joints.png", ["a", "b"], np.zeros((3, 2)), unplaced=["b"])
    assert titles == ["a", "b (not placed by keypoints)"]
