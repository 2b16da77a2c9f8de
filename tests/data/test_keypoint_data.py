"""Keypoint training views: labels that match the renders, determinism, resume, and the folder's errors."""

import numpy as np
import pytest

from drrobot.data.keypoint_data import KeypointDataConfig, load_keypoint_data, render_scene, scene_path, write_keypoint_data
from drrobot.errors import UsageError
from drrobot.robots import load_robot
from drrobot.vision.keypoint_net import KeypointSpec

TOY_SPEC = KeypointSpec("toy_arm", ("link1", "link2", "link3", "tool"), ((0.0, 0.0, 0.1), (0.0, 0.0, 0.15), (0.0, 0.0, 0.12), (0.0, 0.0, 0.0)))


def tiny(tmp_path, scenes=2):
    return KeypointDataConfig(out=tmp_path, scenes=scenes, views_per_scene=3, width=96, robot="toy_arm", workers=1,
                              distance=(0.8, 1.2), noise_sigma=(0.0, 0.0), jpeg_quality=(95, 95))  # fmt: skip


def test_labels_sit_on_the_robot(tmp_path):
    arrays = render_scene(tiny(tmp_path), load_robot("toy_arm"), TOY_SPEC, 0)
    images, uv, in_view = arrays["images"], arrays["uv"], arrays["in_view"]
    assert images.shape == (3, 72, 96, 3) and uv.shape == (3, 4, 2) and in_view.mean() >= 0.7
    tool_yellow = np.array([242, 204, 25])
    for view in range(3):  # the tool keypoint (the yellow sphere's centre) lands on yellow pixels
        if in_view[view, 3]:
            x, y = uv[view, 3].astype(int)
            patch = images[view, max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].reshape(-1, 3).astype(float)
            colour = patch / patch.max(axis=1, keepdims=True).clip(1)
            assert (np.abs(colour - tool_yellow / 242).max(axis=1) < 0.35).any()


def test_views_are_deterministic_and_an_interrupted_run_resumes(tmp_path):
    config = tiny(tmp_path)
    write_keypoint_data(config, TOY_SPEC, progress=False)
    first = scene_path(tmp_path, 1).read_bytes()
    scene_path(tmp_path, 1).write_bytes(first[:100])  # a run cut short mid-file
    write_keypoint_data(config, TOY_SPEC, progress=False)
    assert scene_path(tmp_path, 1).read_bytes() == first
    spec, arrays = load_keypoint_data(tmp_path)
    assert spec == TOY_SPEC and len(arrays["images"]) == 6


def test_another_robots_keypoints_in_the_same_folder_are_refused(tmp_path):
    write_keypoint_data(tiny(tmp_path, scenes=1), TOY_SPEC, progress=False)
    other = KeypointSpec("toy_arm", ("link1",) * 6, ((0.0, 0.0, 0.0),) * 6)
    with pytest.raises(UsageError, match="other keypoints"):
        write_keypoint_data(tiny(tmp_path, scenes=1), other, progress=False)
    with pytest.raises(UsageError, match="no keypoint data"):
        load_keypoint_data(tmp_path / "empty")
