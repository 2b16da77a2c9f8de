"""Panda-3CAM look-alike sequences: exact intrinsics, labels that match the pixels, DREAM read-back,
determinism, clear errors."""

import dataclasses
import json

import mujoco
import numpy as np
import pytest

from drrobot.apps.cli import main as cli_main
from drrobot.apps.lookalike import main
from drrobot.data.cameras import look_at
from drrobot.data.dream import load_dream
from drrobot.data.lookalike import (
    CAMERA_NAME,
    CAMERAS,
    GROUND_TRUTH_CAMERA,
    PANDA_JOINTS,
    SETTINGS_FILE,
    Labels,
    LookalikeConfig,
    LookalikeError,
    SceneRenderer,
    add_pinhole_camera,
    compile_scene,
    generate,
    project,
)
from drrobot.joints import JointSpec
from drrobot.robots import load_robot

DREAM_KEYPOINTS = (
    "panda_link0", "panda_link2", "panda_link3", "panda_link4", "panda_link6", "panda_link7", "panda_hand"
)
SMALL = dict(frames=3, scale=0.25, waypoints=(2, 2))  # 160x120 px, two waypoints


def config(out, **overrides) -> LookalikeConfig:
    return dataclasses.replace(LookalikeConfig(out=out), **{**SMALL, **overrides})


def files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def assert_identical(a, b):
    assert files(a) == files(b)
    for rel in files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookalike") / "azure"
    generate(config(root), progress=False)
    return root


def blob_centre(image: np.ndarray) -> np.ndarray:  # [2] pixel coordinates, centres at +0.5
    weight = image.astype(np.float64).sum(-1)  # [H, W]
    rows, cols = np.indices(weight.shape)
    return np.array([(weight * cols).sum(), (weight * rows).sum()]) / weight.sum() + 0.5


def test_pinhole_camera_renders_where_K_projects():
    """Small spheres seen by a camera with an off-centre principal point land on K's projection (< 1 px)."""
    width, height = 320, 240
    K = np.array([[300.0, 0.0, 140.3], [0.0, 280.0, 131.7], [0.0, 0.0, 1.0]])  # principal point 20, 12 px off centre
    viewmat = look_at(np.array([1.2, -0.6, 0.7]), np.array([0.0, 0.1, 0.2]))  # [4, 4]
    targets = np.array([[0.0, 0.0], [-0.3, -0.2], [0.35, 0.25], [0.3, -0.25], [-0.25, 0.3]])  # [P, 2] x/z, y/z
    points_camera = np.concatenate([targets, np.ones((len(targets), 1))], 1) * 1.2  # [P, 3] at 1.2 m depth
    points_world = (points_camera - viewmat[:3, 3]) @ viewmat[:3, :3]  # [P, 3]
    spec = mujoco.MjSpec()
    for point in points_world:
        spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.006, 0, 0], pos=point, rgba=[1, 1, 1, 1])
    add_pinhole_camera(spec, CAMERA_NAME, K, width, height, viewmat)
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    rgba = model.geom_rgba.copy()
    with SceneRenderer(model, width, height) as renderer:
        for k, point in enumerate(points_camera):
            model.geom_rgba[:, 3] = 0.0  # MuJoCo skips alpha-0 geoms: one sphere at a time
            model.geom_rgba[k, 3] = rgba[k, 3]
            found = blob_centre(renderer.render(data))
            expected = project(K, point[None])[0]
            assert np.linalg.norm(found - expected) < 1.0, (k, found, expected)


def test_scene_shows_the_robot_at_its_keypoints():
    """In a generated lab the robot covers the pixels around its projected keypoints."""
    cfg = LookalikeConfig(scale=0.5)
    K, width, height = CAMERAS["realsense"].scaled(cfg.scale)
    viewmat = look_at(np.array([1.6, 0.9, 0.9]), np.array([0.0, 0.0, 0.4]))  # [4, 4]
    robot = load_robot("panda")
    model = compile_scene(robot, np.random.default_rng(3), 0.5, K, width, height, viewmat, cfg)
    labels = Labels(model, JointSpec.from_mj_model(model), cfg)
    data = mujoco.MjData(model)
    labels.pose(data, labels.joint_spec.canonical())
    robot_geoms = model.geom_bodyid > 0  # the lab is all world-body geoms
    with SceneRenderer(model, width, height) as renderer:
        with_robot = renderer.render(data).astype(int)
        model.geom_rgba[robot_geoms, 3] = 0.0
        without_robot = renderer.render(data).astype(int)
    robot_mask = np.abs(with_robot - without_robot).max(-1) > 24  # [H, W]
    assert 0.02 < robot_mask.mean() < 0.5
    uv = project(K, labels.keypoints_camera(data, viewmat))  # [K, 2]
    near_robot = [robot_mask[int(v) - 3 : int(v) + 4, int(u) - 3 : int(u) + 4].any() for u, v in uv]
    assert all(near_robot), dict(zip(labels.keypoint_names, near_robot))


def test_sequence_reads_back_as_dream(sequence):
    seq = load_dream(sequence)
    K, width, height = CAMERAS["azure"].scaled(0.25)
    assert (seq.width, seq.height, seq.units) == (width, height, "m") and np.allclose(seq.K, K)
    assert len(seq.frames) == 3
    model = load_robot("panda").mj_model()
    ranges = np.array([model.joint(name).range for name in PANDA_JOINTS])  # [8, 2]
    for frame in seq.frames:
        assert frame.keypoint_names == DREAM_KEYPOINTS
        assert frame.joint_names[0] == "panda/panda_joint1" and frame.joint_names[-1] == "panda/panda_finger_joint1"
        np.testing.assert_allclose(frame.keypoints_2d, project(seq.K, frame.keypoints_3d), atol=1e-9)
        assert np.all(frame.keypoints_2d > 0) and np.all(frame.keypoints_2d < [width, height])
        assert np.all(frame.joint_positions >= ranges[:, 0]) and np.all(frame.joint_positions <= ranges[:, 1])
    images = [seq.read_image(i).astype(int) for i in range(3)]  # [H, W, 3] each
    assert all(image.mean() > 30 and image.std() > 15 for image in images)  # lit, not a flat colour
    moved = np.abs(images[0] - images[2]).max(-1) > 40  # [H, W] the robot moved between the first and last frame
    assert moved.mean() > 0.005
    assert not np.allclose(seq.frames[0].joint_positions, seq.frames[2].joint_positions)


def test_metadata_files(sequence):
    truth = json.loads((sequence / GROUND_TRUTH_CAMERA).read_text())
    viewmat, K = np.array(truth["viewmat"]), np.array(truth["K"])
    assert np.allclose(viewmat[:3, :3] @ viewmat[:3, :3].T, np.eye(3)) and np.allclose(K, load_dream(sequence).K)
    frame = load_dream(sequence).frames[0]
    depth = np.linalg.norm(-viewmat[:3, :3].T @ viewmat[:3, 3])  # camera distance from the base (link0)
    assert 1.0 <= depth <= 2.5 and np.allclose(frame.keypoints_3d[0], viewmat[:3, 3])  # link0 at the origin
    settings = json.loads((sequence / SETTINGS_FILE).read_text())
    assert (settings["camera"], settings["seed"], settings["frames"]) == ("azure", 0, 3)
    assert 2.0 <= settings["noise_sigma"] <= 4.0


def test_same_seed_same_sequence_and_all_cameras(tmp_path, sequence):
    generate(config(tmp_path / "again"), progress=False)
    assert_identical(sequence, tmp_path / "again")
    generate(config(tmp_path / "all", camera="all", frames=3), progress=False)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(CAMERAS)
    assert_identical(sequence, tmp_path / "all/azure")  # each camera has its own stream
    assert load_dream(tmp_path / "all/realsense").K[0, 0] == pytest.approx(CAMERAS["realsense"].fx / 4)
    generate(config(tmp_path / "other", seed=1), progress=False)
    other = load_dream(tmp_path / "other").frames[0]
    assert not np.allclose(other.keypoints_3d, load_dream(sequence).frames[0].keypoints_3d)


def test_overwrite_replaces_only_a_lookalike_sequence(tmp_path, sequence):
    out = tmp_path / "seq"
    generate(config(out), progress=False)
    with pytest.raises(LookalikeError, match="not empty"):
        generate(config(out), progress=False)
    generate(config(out, frames=2, overwrite=True), progress=False)
    assert len(load_dream(out).frames) == 2  # no stale third frame
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LookalikeError, match="refusing to delete"):
        generate(config(foreign, overwrite=True), progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(camera="kinect"), "camera must be one of azure, kinect360, realsense, all"),
        (dict(frames=0), "frames must be >= 1"),
        (dict(waypoints=(4, 2)), "waypoints must be"),
        (dict(keypoint_bodies=("link0", "no_such_link")), "no body 'no_such_link'"),
    ],
)
def test_bad_settings_are_named(tmp_path, overrides, message):
    with pytest.raises(LookalikeError, match=message):
        generate(config(tmp_path / "out", **overrides), progress=False)


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(LookalikeError, match="cannot write the output folder"):
        generate(config(tmp_path / "file/out"), progress=False)


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["lookalike", "--camera", "kinect"])
    assert exit_info.value.code == 2
    assert main(["--frames", "0", "--out", str(tmp_path / "x")]) == 2
    assert "frames must be >= 1" in capsys.readouterr().err
    out = tmp_path / "cli"
    argv = ["lookalike", "--out", str(out), "--frames", "2", "--scale", "0.25", "--camera", "kinect360"]
    assert cli_main(argv) == 0
    assert len(load_dream(out).frames) == 2 and "2 frames" in capsys.readouterr().out
