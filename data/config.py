"""Dataset-generation settings: tyro dataclasses and the named presets `cpu-quick`, `default`, `paper`.

    drrobot data --robot panda --preset cpu-quick --out outputs/panda-data --camera.views 4

`--preset` picks the starting values; any field can then be overridden on the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from drrobot.errors import UsageError

PresetName = Literal["cpu-quick", "default", "paper"]


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """Cameras on a sphere shell around the robot, looking at its bounding-box centre."""

    height: int = 128
    """Image height in pixels."""
    width: int = 128
    """Image width in pixels."""
    fovy_deg: float = 45.0
    """Vertical field of view in degrees (square pixels: fx = fy)."""
    views: int = 8
    """Cameras (views) rendered per pose."""
    elevation_deg: tuple[float, float] = (-20.0, 70.0)
    """Range of the camera's angle above the horizontal plane through the target (positive: looking down)."""
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    """Range of the camera's azimuth around the world z axis (0: on the +x side)."""
    margin: tuple[float, float] = (1.1, 1.3)
    """Range of the camera distance as a multiple of the closest distance at which the robot's bounding
    sphere fits the view. >= 1 keeps the whole robot in view and no camera inside it."""


@dataclasses.dataclass(frozen=True)
class LightingConfig:
    """Simple, fast lighting; every value is recorded in the manifest."""

    headlight_ambient: float = 0.3
    headlight_diffuse: float = 0.6
    headlight_specular: float = 0.2
    model_lights: bool = True
    """Keep the lights the robot description defines."""
    shadows: bool = False
    reflections: bool = False
    msaa_samples: int = 0
    """Multisample anti-aliasing samples of the RGB pass (0: off). Masks and depth are never blended."""
    supersample: int = 3
    """Render at this many times the resolution and box-filter: anti-aliased RGB plus a coverage `alpha`
    channel (1: off, alpha is then the hard mask); the mask holds each pixel's majority link. Odd, so depth
    stays sampled at pixel centres.
    Cheap with software GL, whose cost is mostly per triangle (~10% more render time at 128 px)."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Render a training dataset of a robot with MuJoCo (headless)."""

    robot: str = "panda"
    """Short robot name (see `drrobot.robots.known_robots()`) or an MJCF/URDF file path."""
    out: Path = Path("outputs/data")
    """Output dataset directory (created; an existing dataset with the same settings is resumed)."""
    preset: PresetName = "cpu-quick"
    """Starting values: cpu-quick (minutes on 2 cores), default, paper (10k poses x 12 views, 256 px)."""
    seed: int = 0
    """Global seed: the same seed and settings give byte-identical samples."""
    train_poses: int = 300
    """Collision-free poses sampled uniformly within the joint limits."""
    test_poses: int = 50
    """Held-out poses, seeded separately from the training poses."""
    canonical_samples: int = 8
    """Samples of the canonical pose (each with `camera.views` views)."""
    camera: CameraConfig = CameraConfig()
    lighting: LightingConfig = LightingConfig()
    surface_points: int = 4096
    """Points sampled on the visual surface (stored once in link frames and posed in every sample)."""
    geom_groups: tuple[int, ...] = (0, 1, 2)
    """MuJoCo geom groups rendered and sampled (MuJoCo's viewer shows 0-2: the visual geoms)."""
    collision_tolerance: float = 1e-3
    """A pose is rejected when two robot collision geoms penetrate deeper than this (metres)."""
    max_pose_tries: int = 1000
    """Rejection-sampling attempts per pose before giving up with an error."""
    compress: bool = True
    """Deflate-compress sample files (level 1: fast)."""
    workers: int = 0
    """Parallel worker processes (0: one per CPU core; 1: render in this process)."""
    backend: Literal["multiprocessing", "ray"] = "multiprocessing"
    """`ray` distributes samples over an existing Ray cluster (`pip install ray`)."""
    ray_address: str = "auto"
    """Ray cluster for `--backend ray`: "auto" (the running cluster), host:port, or "local" (start one here)."""
    gl: Literal["auto", "egl", "osmesa"] = "auto"
    """Headless OpenGL backend (auto: $MUJOCO_GL if set, else EGL with an OSMesa fallback)."""
    overwrite: bool = False
    """Delete an existing dataset in `out` made with different settings instead of refusing."""


RUN_ONLY_FIELDS = ("out", "workers", "backend", "ray_address", "gl", "overwrite")
"""Fields that do not change the dataset's content (left out of the manifest's settings)."""

PRESETS: dict[str, DataConfig] = {
    "cpu-quick": DataConfig(preset="cpu-quick"),
    "default": DataConfig(
        preset="default",
        train_poses=2000,
        test_poses=200,
        canonical_samples=16,
        camera=CameraConfig(height=256, width=256, views=12),
        surface_points=8192,
    ),
    "paper": DataConfig(
        preset="paper",
        train_poses=10_000,
        test_poses=500,
        canonical_samples=32,
        camera=CameraConfig(height=256, width=256, views=12),
        surface_points=16384,
    ),
}


def validate(config: DataConfig) -> None:
    """Raise UsageError naming the field for settings that cannot work."""
    cam = config.camera
    problems = []
    if cam.height < 1 or cam.width < 1:
        problems.append(f"camera.height/width must be >= 1 (got {cam.height}x{cam.width})")
    if not 0.0 < cam.fovy_deg < 180.0:
        problems.append(f"camera.fovy_deg must be in (0, 180) (got {cam.fovy_deg})")
    if cam.views < 1:
        problems.append(f"camera.views must be >= 1 (got {cam.views})")
    lo, hi = cam.elevation_deg
    if not -89.0 <= lo <= hi <= 89.0:
        problems.append(f"camera.elevation_deg must satisfy -89 <= low <= high <= 89 (got {cam.elevation_deg})")
    if cam.azimuth_deg[0] > cam.azimuth_deg[1]:
        problems.append(f"camera.azimuth_deg must be (low, high) (got {cam.azimuth_deg})")
    if not 1.0 <= cam.margin[0] <= cam.margin[1]:
        problems.append(f"camera.margin must satisfy 1 <= low <= high (got {cam.margin})")
    if min(config.train_poses, config.test_poses, config.canonical_samples) < 0:
        problems.append("train_poses, test_poses and canonical_samples must be >= 0")
    if config.surface_points < 1:
        problems.append(f"surface_points must be >= 1 (got {config.surface_points})")
    if not config.geom_groups or not all(0 <= g < 6 for g in config.geom_groups):
        problems.append(f"geom_groups must be MuJoCo groups 0-5 (got {config.geom_groups})")
    if config.workers < 0:
        problems.append(f"workers must be >= 0 (got {config.workers})")
    if config.lighting.msaa_samples < 0:
        problems.append(f"lighting.msaa_samples must be >= 0 (got {config.lighting.msaa_samples})")
    if config.lighting.supersample < 1 or config.lighting.supersample % 2 == 0:
        problems.append(f"lighting.supersample must be an odd number >= 1 (got {config.lighting.supersample})")
    if problems:
        raise UsageError("invalid dataset settings: " + "; ".join(problems))


def content_settings(config: DataConfig) -> dict:
    """The settings that determine the dataset's bytes (JSON-ready; recorded and compared on resume)."""
    settings = dataclasses.asdict(config)
    for name in RUN_ONLY_FIELDS:
        settings.pop(name)
    return _jsonable(settings)


def render_configs(settings: dict) -> tuple[CameraConfig, LightingConfig, tuple[int, ...]]:
    """The camera, lighting and geom groups recorded in a manifest's `settings` (`content_settings`), as
    `MujocoRenderer` takes them."""
    camera = CameraConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["camera"].items()})
    return camera, LightingConfig(**settings["lighting"]), tuple(settings["geom_groups"])


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
