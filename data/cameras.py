"""Cameras: intrinsics from a vertical field of view, OpenCV look-at extrinsics, sampling on a sphere shell.

Conventions (DESIGN.md): OpenCV camera (x right, y down, z forward), `viewmat` = world->camera 4x4,
`K` in pixels with pixel centres at +0.5. World up is +z. A camera is described by the numbers MuJoCo's
free camera uses (target, distance, azimuth, elevation) and the viewmat is derived from the same numbers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from drrobot.data.config import CameraConfig


@dataclasses.dataclass(frozen=True)
class Orbit:
    """A camera looking at `target` from `distance`, at `azimuth_deg` around +z and `elevation_deg` above
    the horizontal plane through the target (positive: above, looking down)."""

    target: tuple[float, float, float]
    distance: float
    azimuth_deg: float
    elevation_deg: float

    @property
    def forward(self) -> np.ndarray:  # [3] unit viewing direction (camera +z)
        az, el = math.radians(self.azimuth_deg), math.radians(self.elevation_deg)
        # MuJoCo's free camera: forward = (cos el cos az, cos el sin az, sin el) with its elevation = -ours.
        return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), -math.sin(el)])

    @property
    def eye(self) -> np.ndarray:  # [3] camera centre in world
        return np.asarray(self.target, dtype=np.float64) - self.distance * self.forward

    def viewmat(self) -> np.ndarray:  # [4, 4] world->camera, OpenCV
        return look_at(self.eye, np.asarray(self.target, dtype=np.float64))

    @classmethod
    def from_viewmat(cls, viewmat: np.ndarray, focus: np.ndarray) -> "Orbit":
        """The orbit (no roll, as the dataset's cameras) of an OpenCV world->camera matrix [4, 4]; the point
        `focus` [3] sets its distance along the viewing direction."""
        rot, trans = viewmat[:3, :3].astype(np.float64), viewmat[:3, 3].astype(np.float64)
        eye = -rot.T @ trans
        forward = rot[2]
        distance = max(float(np.dot(focus - eye, forward)), 1e-3)
        azimuth = math.degrees(math.atan2(forward[1], forward[0]))
        elevation = -math.degrees(math.asin(np.clip(forward[2], -1.0, 1.0)))
        return cls(tuple(eye + distance * forward), distance, azimuth, elevation)


def intrinsics(fovy_deg: float, height: int, width: int) -> np.ndarray:  # [3, 3]
    """Pinhole K of an OpenGL camera with vertical fov `fovy_deg` over `height` pixels, square pixels,
    principal point at the image centre (pixel centres at +0.5)."""
    fy = (height / 2.0) / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def half_fov_min(fovy_deg: float, height: int, width: int) -> float:
    """The smaller of the horizontal and vertical half fields of view, radians."""
    half_y = math.radians(fovy_deg) / 2.0
    half_x = math.atan(math.tan(half_y) * width / height)
    return min(half_x, half_y)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:  # [4, 4]
    """World->camera OpenCV viewmat of a camera at `eye` [3] looking at `target` [3], world `up` [3] (+z)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else np.asarray(up, dtype=np.float64)
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    norm = np.linalg.norm(x)
    if norm < 1e-9:
        raise ValueError("look_at: the viewing direction is parallel to the up vector")
    x = x / norm
    y = np.cross(z, x)  # image y points down (OpenCV)
    rot = np.stack([x, y, z])  # [3, 3] rows: camera axes in world
    viewmat = np.eye(4)
    viewmat[:3, :3] = rot
    viewmat[:3, 3] = -rot @ eye
    return viewmat


def shell_distance(radius: float, camera: CameraConfig) -> float:
    """Closest camera distance at which a sphere of `radius` fits entirely in the view."""
    return radius / math.sin(half_fov_min(camera.fovy_deg, camera.height, camera.width))


def sample_orbits(
    rng: np.random.Generator, center: np.ndarray, radius: float, camera: CameraConfig
) -> list[Orbit]:
    """`camera.views` cameras looking at `center` [3] from the sphere shell
    [1, margin_high] x shell_distance(radius): azimuth uniform, elevation uniform on the sphere
    (uniform in sin(elevation)), margin uniform."""
    n = camera.views
    azimuth = rng.uniform(*camera.azimuth_deg, size=n)
    sin_lo, sin_hi = (math.sin(math.radians(e)) for e in camera.elevation_deg)
    elevation = np.degrees(np.arcsin(rng.uniform(sin_lo, sin_hi, size=n)))
    margin = rng.uniform(*camera.margin, size=n)
    base = shell_distance(radius, camera)
    target = tuple(float(c) for c in center)
    return [
        Orbit(target, float(base * m), float(az), float(el))
        for az, el, m in zip(azimuth, elevation, margin)
    ]
