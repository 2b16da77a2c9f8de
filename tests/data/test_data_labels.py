"""Camera and label correctness: stored K and viewmat project the robot onto its own rendered masks."""

import numpy as np
import pytest
from data_helpers import BEADS_XML, project, tiny_config

from drrobot.data import surface
from drrobot.data.config import CameraConfig, LightingConfig
from drrobot.data.mujoco_render import decode_segmentation, majority_labels
from drrobot.data.sample import SampleMaker
from drrobot.robots import load_robot

CAMERA = CameraConfig(height=72, width=96, views=4)


@pytest.fixture(scope="module")
def panda():
    config = tiny_config("unused", robot="panda", camera=CAMERA, surface_points=2000)
    with SampleMaker(config, load_robot("panda").path) as maker:
        yield maker, [maker.arrays("canonical", 0), maker.arrays("train", 0), maker.arrays("train", 1)]


def label_agreement(arrays, viewmat_fix=lambda v: v):
    """Over all views: fraction of surface points that are visible (depth agrees), and among those the
    fraction whose pixel shows their link exactly and within a 3x3 neighbourhood."""
    visible = exact = near = total = 0
    for v in range(arrays["K"].shape[0]):
        uv, z = project(arrays["points"], arrays["K"][v], viewmat_fix(arrays["viewmat"][v]))
        h, w = arrays["mask"].shape[1:]
        col, row = np.floor(uv).astype(int).T
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        col, row, z, link = col[inside], row[inside], z[inside], arrays["point_link"][inside]
        seen = np.abs(arrays["depth"][v][row, col] - z) < 0.01 + 0.01 * z
        padded = np.pad(arrays["mask"][v], 1, constant_values=-2)
        window = np.stack([padded[row + 1 + dr, col + 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], -1)
        total += len(arrays["points"])
        visible += seen.sum()
        exact += (arrays["mask"][v][row, col] == link)[seen].sum()
        near += (window == link[:, None]).any(-1)[seen].sum()
    return visible / total, exact / max(visible, 1), near / max(visible, 1)


def test_surface_points_project_into_their_link_mask(panda):
    _, samples = panda
    for arrays in samples:
        seen, exact, near = label_agreement(arrays)
        assert seen > 0.15  # depth agrees with the camera-frame z of many points
        assert exact > 0.85  # the remainder sit on link boundaries, at most a pixel away
        assert near > 0.99


def test_opengl_convention_bug_cannot_pass(panda):
    _, samples = panda
    to_opengl = np.diag([1.0, -1.0, -1.0, 1.0])  # the classic bug: an OpenGL camera used as OpenCV
    seen, exact, _ = label_agreement(samples[1], lambda v: to_opengl @ v)
    assert seen < 0.05 or exact < 0.5
    upside_down = {"mask": samples[1]["mask"][:, ::-1], "depth": samples[1]["depth"][:, ::-1]}
    flipped = dict(samples[1], **upside_down)
    seen, exact, _ = label_agreement(flipped)
    assert seen < 0.1 or exact < 0.5


def test_link_origins_project_into_their_link_mask(tmp_path):
    robot = tmp_path / "beads.xml"
    robot.write_text(BEADS_XML)
    config = tiny_config(tmp_path, robot=str(robot), camera=CameraConfig(height=64, width=64, views=6))
    checked = 0
    with SampleMaker(config, robot) as maker:
        for index in range(4):
            arrays = maker.arrays("train", index)
            origins = arrays["link_poses"][:, :3, 3].astype(np.float64)  # [L, 3]: each the centre of a ball of its link
            for v in range(6):
                uv, z = project(origins, arrays["K"][v], arrays["viewmat"][v])
                col, row = np.floor(uv).astype(int).T
                label = arrays["mask"][v][row, col]
                depth = arrays["depth"][v][row, col]
                for link in range(len(origins)):
                    # Its own ball, or something in front of the ball's centre (never background).
                    assert label[link] == link or (label[link] >= 0 and depth[link] < z[link]), (index, v, link)
                    checked += label[link] == link
    assert checked > 40


def test_mujoco_camera_is_the_stored_camera(panda):
    maker, _ = panda
    arrays = maker.arrays("test", 0)  # the renderer's last camera is view V-1 of this sample
    gl = maker.renderer.scene_camera()
    viewmat = arrays["viewmat"][-1].astype(np.float64)
    eye = -viewmat[:3, :3].T @ viewmat[:3, 3]
    np.testing.assert_allclose(gl.pos, eye, atol=1e-5)
    np.testing.assert_allclose(gl.forward, viewmat[2, :3], atol=1e-5)  # OpenCV +z = viewing direction
    np.testing.assert_allclose(gl.up, -viewmat[1, :3], atol=1e-5)  # OpenCV +y = image down
    K = arrays["K"][-1]
    h, w = arrays["mask"].shape[1:]
    assert gl.frustum_top / gl.frustum_near == pytest.approx((h / 2) / K[1, 1], rel=1e-6)
    assert gl.frustum_bottom == pytest.approx(-gl.frustum_top) and gl.frustum_center == 0
    assert K[0, 0] == K[1, 1] and (K[0, 2], K[1, 2]) == (w / 2, h / 2)


def test_robot_fully_in_view_and_cameras_outside_it(panda):
    maker, samples = panda
    geoms = surface.visible_geoms(maker.model, (0, 1, 2))
    meshes = [surface.geom_mesh(maker.model, g)[0] for g in geoms]
    verts = np.concatenate(meshes)  # every visual mesh vertex, link frames
    links = np.concatenate([np.full(len(m), maker.model.geom_bodyid[g] - 1) for m, g in zip(meshes, geoms)])
    for arrays in samples:
        world = surface.pose_points(verts, links, arrays["link_poses"].astype(np.float64))
        center, radius = surface.bounding_sphere(world)
        mask = arrays["mask"]
        border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]], axis=1)
        assert (border == -1).all()  # nothing touches the image border
        for viewmat in arrays["viewmat"].astype(np.float64):
            eye = -viewmat[:3, :3].T @ viewmat[:3, 3]
            assert np.linalg.norm(eye - center) > 1.05 * radius


def test_background_is_black_with_zero_depth(panda):
    _, samples = panda
    for arrays in samples:
        background, uncovered, covered = arrays["mask"] == -1, arrays["alpha"] == 0, arrays["alpha"] == 255
        assert background[uncovered].all() and (arrays["depth"][uncovered] == 0).all()
        assert (~background[covered]).all() and (arrays["depth"][covered] > 0).all()
        assert ((arrays["depth"] == 0) == background).mean() > 0.99  # centre sample vs majority: edges only
        assert (arrays["rgb"][uncovered] == 0).all()  # uncovered pixels are black
        assert background.mean() < 0.98 and set(np.unique(arrays["mask"])) <= set(range(-1, 11))


def test_supersampled_edges_are_soft_and_labels_are_majorities(panda):
    """Anti-aliasing: RGB and alpha are averages over 3x3 sub-pixels (premultiplied colour), the mask holds
    each pixel's majority link and depth equals a plain render's, sampled at the pixel centres."""
    maker, samples = panda
    plain_config = tiny_config("unused", robot="panda", camera=CAMERA, surface_points=2000,
                               lighting=LightingConfig(supersample=1))
    with SampleMaker(plain_config, load_robot("panda").path) as plain:
        aliased = plain.arrays("train", 0)
    soft = samples[1]
    same = soft["mask"] == aliased["mask"]
    assert 0.98 < same.mean() < 1.0  # majority and centre sample differ only on some edge pixels
    hit = (soft["depth"] > 0) & (aliased["depth"] > 0)
    assert ((soft["depth"] > 0) == (aliased["depth"] > 0)).mean() > 0.999  # both sample the pixel centre
    np.testing.assert_allclose(soft["depth"][hit], aliased["depth"][hit], atol=5e-3)  # depth-buffer precision
    np.testing.assert_array_equal(aliased["alpha"], np.where(aliased["mask"] >= 0, 255, 0))
    robot = soft["mask"] >= 0
    partial = (soft["alpha"] > 0) & (soft["alpha"] < 255)
    assert partial.sum() > 0.5 * (robot ^ np.roll(robot, 1, axis=-1)).sum()  # the outline is soft
    assert (soft["alpha"][~robot] < 255).all() and (soft["alpha"][robot] > 0).all()  # centre sample agrees
    # premultiplied: colour never exceeds coverage; interiors keep the aliased render's brightness
    assert (soft["rgb"].max(-1).astype(int) <= soft["alpha"].astype(int) + 1).all()
    interior = soft["alpha"] == 255
    assert abs(soft["rgb"][interior].mean() - aliased["rgb"][interior].mean()) < 2.0


def test_majority_labels_take_the_most_covered_label_and_break_ties_at_the_centre():
    fine = np.array([
        [3, 3, 3, -1, 2, 2, 1, 2, -1],
        [3, 3, 3, -1, -1, 2, 2, 1, -1],
        [3, 3, 4, -1, 2, 2, -1, 2, 1],
        [5, 5, 5, 0, 0, 0, 0, 0, 0],
        [5, 4, 5, 0, 0, 0, 0, 0, 0],
        [5, 5, 5, 0, 0, 0, 0, 0, 0],
    ], np.int16)  # [2k, 3k] with k = 3
    np.testing.assert_array_equal(majority_labels(fine, 3), [[3, 2, 1], [5, 0, 0]])
    np.testing.assert_array_equal(majority_labels(fine, 1), fine)


def test_segmentation_decode_fast_path_matches_the_24_bit_decode():
    rng = np.random.default_rng(0)
    lookup = rng.integers(-1, 12, 40).astype(np.int16)
    ids = np.zeros((16, 16, 3), np.uint8)
    ids[..., 0] = rng.integers(0, 60, (16, 16))  # includes segids past the table
    wide_lookup = np.concatenate([lookup, np.full(300, lookup[0], np.int16)])  # > 256 entries: 24-bit path
    np.testing.assert_array_equal(decode_segmentation(ids, lookup), decode_segmentation(ids, wide_lookup))
    ids[0, 0] = (4, 1, 0)  # segid 260 needs the green byte
    assert decode_segmentation(ids, wide_lookup)[0, 0] == wide_lookup[260]
