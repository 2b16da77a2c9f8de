"""Camera maths: intrinsics, OpenCV look-at, the sphere shell."""

import math

import numpy as np
import pytest

from drrobot.data import cameras
from drrobot.data.cameras import Orbit
from drrobot.data.config import CameraConfig


def test_intrinsics_from_fovy_and_resolution():
    K = cameras.intrinsics(60.0, height=48, width=64)
    fy = 24.0 / math.tan(math.radians(30.0))
    np.testing.assert_allclose(K, [[fy, 0, 32.0], [0, fy, 24.0], [0, 0, 1]], rtol=0, atol=1e-12)


def test_look_at_is_opencv():
    eye, target = np.array([2.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])
    V = cameras.look_at(eye, target)
    R = V[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(V @ [*eye, 1], [0, 0, 0, 1], atol=1e-12)  # camera centre
    cam_target = V @ [*target, 1]
    np.testing.assert_allclose(cam_target[:3], [0, 0, 2.0], atol=1e-12)  # straight ahead, +z forward
    above = V @ [0, 0, 2.0, 1]  # a point above the target is up in the image: y < 0 (y points down)
    assert above[1] < 0 and abs(above[0]) < 1e-12
    right = V @ [0, 1.0, 1.0, 1]  # looking along -x with z up, world +y is on the right: image x > 0
    assert right[0] > 0


def test_orbit_matches_mujoco_free_camera_angles():
    orbit = cameras.Orbit(target=(0.1, 0.2, 0.3), distance=2.0, azimuth_deg=90.0, elevation_deg=30.0)
    # Azimuth 90: the camera sits on the -y side looking along +y; elevation 30: above, looking down.
    np.testing.assert_allclose(orbit.forward, [0, math.cos(math.radians(30)), -0.5], atol=1e-12)
    np.testing.assert_allclose(orbit.eye, np.array([0.1, 0.2, 0.3]) - 2.0 * orbit.forward)
    np.testing.assert_allclose(orbit.viewmat()[2, :3], orbit.forward, atol=1e-12)


def test_shell_keeps_sphere_in_view_and_camera_outside():
    cam = CameraConfig(height=30, width=80, fovy_deg=50.0, views=100, elevation_deg=(-10, 60), margin=(1.0, 1.2))
    center, radius = np.array([0.0, 0.0, 0.5]), 0.4
    orbits = cameras.sample_orbits(np.random.default_rng(0), center, radius, cam)
    K = cameras.intrinsics(cam.fovy_deg, cam.height, cam.width)
    directions = np.random.default_rng(1).normal(size=(2000, 3))
    sphere = center + radius * directions / np.linalg.norm(directions, axis=1, keepdims=True)  # [N, 3]
    closest = cameras.shell_distance(radius, cam)
    for o in orbits:
        assert closest * (1 - 1e-12) <= o.distance <= 1.2 * closest * (1 + 1e-12)
        assert o.distance > radius
        assert -10 - 1e-9 <= o.elevation_deg <= 60 + 1e-9
        V = o.viewmat()
        p = sphere @ V[:3, :3].T + V[:3, 3]  # [N, 3] camera frame
        assert (p[:, 2] > 0).all()
        uv = p @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        assert (uv >= -1e-6).all() and (uv[:, 0] <= cam.width + 1e-6).all() and (uv[:, 1] <= cam.height + 1e-6).all()


def test_orbit_from_viewmat_inverts_viewmat():
    """Evaluation re-renders baselines in MuJoCo from a stored viewmat: the orbit must be the same camera."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        orbit = Orbit(tuple(rng.uniform(-1, 1, 3)), rng.uniform(0.5, 3), rng.uniform(-180, 180), rng.uniform(-80, 80))
        back = Orbit.from_viewmat(orbit.viewmat(), np.asarray(orbit.target))
        np.testing.assert_allclose(back.viewmat(), orbit.viewmat(), atol=1e-9)
        assert math.isclose(back.distance, orbit.distance, rel_tol=1e-9)
        np.testing.assert_allclose(back.target, orbit.target, atol=1e-9)
