"""The DREAM / Panda-3CAM format: write a tiny split, read it back, name matching, errors naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drrobot.data.dream import (
    CAMERA_SETTINGS,
    DreamFormatError,
    load_dream,
    match_names,
    write_camera_settings,
    write_frame,
)

KEYPOINTS = ("panda_link0", "panda_link2", "panda_link3", "panda_link4", "panda_link6", "panda_link7", "panda_hand")
JOINTS = tuple(f"panda/panda_joint{i}" for i in range(1, 8)) + ("panda/panda_finger_joint1",)
K = np.array([[10.0, 0.0, 4.0], [0.0, 11.0, 3.0], [0.0, 0.0, 1.0]])
W, H = 8, 6


def _frame_data(i: int) -> dict:
    rng = np.random.default_rng(i)
    kp3d = rng.uniform(-0.5, 0.5, (len(KEYPOINTS), 3)) + [0.0, 0.0, 1.5]  # [K, 3] metres
    kp2d = (kp3d[:, :2] / kp3d[:, 2:]) * [K[0, 0], K[1, 1]] + K[:2, 2]  # [K, 2]
    return {
        "image": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "keypoint_names": KEYPOINTS,
        "keypoints_3d": kp3d,
        "keypoints_2d": kp2d,
        "joint_names": JOINTS,
        "joint_positions": rng.uniform(-1, 1, len(JOINTS)),
    }


def _write_split(root, frames: int = 3, units: str = "m"):
    write_camera_settings(root, K, W, H)
    for i in range(frames):
        write_frame(root, i, **_frame_data(i), units=units)
    return root


@pytest.fixture
def split(tmp_path):
    return _write_split(tmp_path / "split")


def test_round_trip(split):
    seq = load_dream(split)
    assert seq.units == "m" and (seq.width, seq.height) == (W, H) and np.allclose(seq.K, K)
    assert [f.stem for f in seq.frames] == ["000000", "000001", "000002"]
    for i, frame in enumerate(seq.frames):
        want = _frame_data(i)
        assert frame.keypoint_names == KEYPOINTS and frame.joint_names == JOINTS
        assert np.allclose(frame.keypoints_3d, want["keypoints_3d"])
        assert np.allclose(frame.keypoints_2d, want["keypoints_2d"])
        assert np.allclose(frame.joint_positions, want["joint_positions"])
        assert frame.image_path.name == f"{frame.stem}.rgb.jpg"
    image = seq.read_image(1)
    assert image.shape == (H, W, 3) and image.dtype == np.uint8


def test_centimetre_split_reads_as_metres(tmp_path, split):
    cm = _write_split(tmp_path / "cm", units="cm")
    stored = json.loads((cm / "000000.json").read_text())["objects"][0]["keypoints"][0]["location"]
    assert np.allclose(stored, _frame_data(0)["keypoints_3d"][0] * 100)
    auto, explicit, metres = load_dream(cm), load_dream(cm, units="cm"), load_dream(split)
    assert auto.units == explicit.units == "cm"
    for a, e, m in zip(auto.frames, explicit.frames, metres.frames):
        assert np.allclose(a.keypoints_3d, m.keypoints_3d) and np.array_equal(a.keypoints_3d, e.keypoints_3d)
        assert np.array_equal(a.joint_positions, m.joint_positions)


def test_stride_and_max_frames(tmp_path):
    root = _write_split(tmp_path / "s", frames=5)
    assert [f.stem for f in load_dream(root, stride=2).frames] == ["000000", "000002", "000004"]
    assert [f.stem for f in load_dream(root, stride=2, max_frames=2).frames] == ["000000", "000002"]
    assert [f.stem for f in load_dream(root, max_frames=1).frames] == ["000000"]
    with pytest.raises(ValueError, match="stride"):
        load_dream(root, stride=0)


def test_png_images_are_found(split):
    (split / "000001.rgb.jpg").rename(split / "000001.rgb.png")
    assert load_dream(split).frames[1].image_path.name == "000001.rgb.png"


def test_match_names():
    assert match_names(JOINTS, ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"]) == [
        0, 1, 2, 3, 4, 5, 6, None,
    ]
    # without a "finger_joint1" target the finger would also end in "_joint1": panda_joint1 keeps joint1
    assert match_names(["panda_finger_joint1", "panda_joint1"], ["joint1", "finger_joint2"]) == [None, 0]
    targets = ["joint1", "finger_joint1", "joint2"]
    assert match_names(["panda_finger_joint1", "panda/panda_joint1", "joint2"], targets) == [1, 0, 2]
    assert match_names(KEYPOINTS, ["hand", "link0", "link7"], what="keypoint") == [1, None, None, None, None, 2, 0]
    with pytest.raises(DreamFormatError, match=r"keypoint.*'panda_hand'.*'wrist'"):
        match_names(["panda_hand"], ["wrist"], what="keypoint")


def _edit_json(path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


@pytest.mark.parametrize(
    "break_it, culprit",
    [
        (lambda root: (root / CAMERA_SETTINGS).unlink(), CAMERA_SETTINGS),
        (lambda root: (root / CAMERA_SETTINGS).write_text("{not json"), CAMERA_SETTINGS),
        (lambda root: (root / CAMERA_SETTINGS).write_text('{"camera_settings": []}'), CAMERA_SETTINGS),
        (
            lambda root: _edit_json(
                root / CAMERA_SETTINGS, lambda r: r["camera_settings"][0]["intrinsic_settings"].update(fx=0)
            ),
            CAMERA_SETTINGS,
        ),
        (
            lambda root: _edit_json(
                root / CAMERA_SETTINGS, lambda r: r["camera_settings"][0]["captured_image_size"].update(width=0)
            ),
            CAMERA_SETTINGS,
        ),
        (lambda root: [p.unlink() for p in root.glob("0*.json")], "no frames"),
        (lambda root: _edit_json(root / "000001.json", lambda r: r.pop("objects")), "000001.json"),
        (lambda root: _edit_json(root / "000001.json", lambda r: r["objects"][0].pop("keypoints")), "000001.json"),
        (lambda root: _edit_json(root / "000001.json", lambda r: r.pop("sim_state")), "000001.json"),
        (lambda root: (root / "000002.rgb.jpg").unlink(), "000002.rgb.jpg"),
    ],
)
def test_bad_input_names_the_file(split, break_it, culprit):
    break_it(split)
    with pytest.raises(DreamFormatError, match=culprit.replace(".", r"\.")):
        load_dream(split)


def test_missing_directory(tmp_path):
    with pytest.raises(DreamFormatError, match="nowhere"):
        load_dream(tmp_path / "nowhere")


def test_unreadable_image_names_the_file(split):
    seq = load_dream(split)
    (split / "000000.rgb.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DreamFormatError, match=r"000000\.rgb\.jpg"):
        seq.read_image(0)


def test_writer_rejects_bad_shapes(tmp_path):
    data = _frame_data(0) | {"keypoints_2d": np.zeros((3, 2))}
    with pytest.raises(ValueError, match="keypoints_2d"):
        write_frame(tmp_path, 0, **data)
    assert not list(tmp_path.iterdir())
