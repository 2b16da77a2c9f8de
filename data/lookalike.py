"""Panda-3CAM look-alike sequences in the DREAM format, for benchmarking pose estimators offline.

    drrobot lookalike --camera azure --out outputs/lookalike/azure --frames 60 --seed 0
    drrobot lookalike --camera all --out outputs/lookalike          # out/azure, out/kinect360, out/realsense

Each sequence is one static camera with the real Panda-3CAM intrinsics (640x480) watching the robot move
smoothly through random waypoints in a randomised, cluttered scene: floor (checker or plain), tables, 4-8
objects beside and behind the robot, a background wall or two under a gradient sky, 1-3 shadow-casting
spot lights, specular materials and JPEG sensor noise. This is a deliberate domain shift from the training data
(the robot alone on black under a headlight). The robot stands at the world origin on the floor (z = 0).

Files per sequence (DREAM writer `drrobot.data.dream`): `_camera_settings.json`, `NNNNNN.rgb.jpg` +
`NNNNNN.json` (keypoints: link-frame origins in the OpenCV camera frame, metres, and their K projection;
`sim_state.joints`), plus our own `_ground_truth_camera.json` (viewmat, K) and `_lookalike.json` (settings).
The same seed gives the same sequence; each camera draws from its own stream (`--camera all` writes the same
azure sequence as `--camera azure`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable, Literal, NamedTuple

import mujoco
import numpy as np
from tqdm import tqdm

from drrobot.data.cameras import look_at
from drrobot.data.dream import CAMERA_SETTINGS, write_camera_settings, write_frame
from drrobot.io import TMP_MARKER, ensure_writable_dir, write_json_atomic
from drrobot.data.mujoco_render import _gl_context, select_gl_backend
from drrobot.joints import JointSpec
from drrobot.robots import RobotDescription, load_robot
from drrobot.errors import UsageError


class Intrinsics(NamedTuple):
    """A pinhole camera at its native resolution (pixel centres at +0.5)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 640
    height: int = 480

    def scaled(self, scale: float) -> tuple[np.ndarray, int, int]:
        """K [3, 3], width, height of the same camera resampled by `scale`."""
        width, height = max(1, round(scale * self.width)), max(1, round(scale * self.height))
        sx, sy = width / self.width, height / self.height
        K = np.array([[sx * self.fx, 0.0, sx * self.cx], [0.0, sy * self.fy, sy * self.cy], [0.0, 0.0, 1.0]])
        return K, width, height


CAMERAS: dict[str, Intrinsics] = {
    "azure": Intrinsics(399.6578776041667, 399.4959309895833, 319.8955891927083, 244.0602823893229),
    "kinect360": Intrinsics(525.0, 525.0, 319.5, 239.5),
    "realsense": Intrinsics(615.52392578125, 615.2191772460938, 328.2606506347656, 251.7917022705078),
}
"""Panda-3CAM's cameras (the real splits' `_camera_settings.json`)."""

PANDA_KEYPOINT_BODIES = ("link0", "link2", "link3", "link4", "link6", "link7", "hand")
"""MuJoCo bodies whose origins are DREAM's Panda keypoints (named `<prefix>_<body>`)."""
PANDA_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint1")
"""MuJoCo joints recorded in `sim_state` (named `<prefix>/<prefix>_<joint>`)."""

SETTINGS_FILE = "_lookalike.json"
GROUND_TRUTH_CAMERA = "_ground_truth_camera.json"
CAMERA_NAME = "lookalike"  # the MuJoCo camera added to the scene
RUN_ONLY_FIELDS = ("camera", "out", "gl", "overwrite")
"""Settings left out of `_lookalike.json` (its `camera` is the sequence's own): they do not change the sequence."""
_OUR_FILES = (CAMERA_SETTINGS, GROUND_TRUTH_CAMERA, SETTINGS_FILE, "[0-9]*.rgb.jpg", "[0-9]*.json", f".*{TMP_MARKER}*")


class LookalikeError(UsageError, RuntimeError):
    """Bad settings, an unusable output folder, or no valid trajectory (the message says what to change)."""


@dataclasses.dataclass(frozen=True)
class LookalikeConfig:
    """Render DREAM-format sequences that look like Panda-3CAM (static camera, moving robot, cluttered scene)."""

    camera: Literal["azure", "kinect360", "realsense", "all"] = "azure"
    """Panda-3CAM camera whose intrinsics to use; `all` writes one sequence per camera into out/<camera>."""
    out: Path = Path("outputs/lookalike/azure")
    """Output folder (with `--camera all`: the parent of one folder per camera)."""
    frames: int = 60
    """Frames per sequence."""
    seed: int = 0
    """The same seed and settings give the same sequence."""
    robot: str = "panda"
    """Short robot name (see `drrobot.robots.known_robots()`) or an MJCF/URDF file path."""
    prefix: str = "panda"
    """DREAM name prefix: keypoints `<prefix>_<body>`, joints `<prefix>/<prefix>_<joint>`, object class."""
    keypoint_bodies: tuple[str, ...] = PANDA_KEYPOINT_BODIES
    """MuJoCo bodies whose origins are the keypoints."""
    joints: tuple[str, ...] = PANDA_JOINTS
    """MuJoCo joints recorded in each frame's `sim_state` (dependent joints allowed)."""
    scale: float = 1.0
    """Image size and intrinsics relative to the real 640x480 camera (smaller: quick previews and tests)."""
    waypoints: tuple[int, int] = (3, 6)
    """Range of the number of random joint waypoints the trajectory passes through (cosine blends)."""
    joint_range: float = 0.7
    """Waypoints are uniform within this middle fraction of each joint's limits."""
    distance: tuple[float, float] = (1.0, 2.0)
    """Range of the camera's distance to its target (metres), raised where needed to fit `framing_radius`."""
    framing_radius: float = 0.6
    """Radius (metres) around the target that the camera's narrower field of view must fit."""
    target_height: tuple[float, float] = (0.2, 0.5)
    """Range of the height above the base of the point the camera looks at (metres)."""
    elevation_deg: tuple[float, float] = (0.0, 40.0)
    """Range of the camera's elevation above its target (degrees; the azimuth is uniform all around)."""
    roll_deg: float = 5.0
    """Largest camera roll about its optical axis (degrees)."""
    clutter: tuple[int, int] = (4, 8)
    """Range of the number of clutter objects (boxes, cylinders, spheres) at 0.5-1.2 m from the base."""
    lights: tuple[int, int] = (1, 3)
    """Range of the number of shadow-casting spot lights."""
    noise_sigma: tuple[float, float] = (2.0, 4.0)
    """Range of the per-sequence Gaussian sensor noise sigma, in 8-bit levels."""
    jpeg_quality: int = 90
    """JPEG quality of the frames (1-100)."""
    view_margin: float = 0.05
    """Every keypoint stays this fraction of the image size inside its border, in every frame."""
    collision_tolerance: float = 1e-3
    """A frame is rejected when the robot penetrates itself or the scene deeper than this (metres)."""
    max_tries: int = 300
    """Waypoint draws before giving up (each must keep its whole segment collision-free and in view)."""
    gl: Literal["auto", "egl", "osmesa"] = "auto"
    """Headless OpenGL backend (auto: $MUJOCO_GL if set, else EGL with an OSMesa fallback)."""
    overwrite: bool = False
    """Replace an existing look-alike sequence in the output folder instead of refusing."""


class SequenceResult(NamedTuple):
    """What `generate_sequence` wrote."""

    directory: Path
    frames: int
    seconds: float


def validate(config: LookalikeConfig) -> None:
    """Raise LookalikeError naming the settings that cannot work."""
    problems = []
    if config.camera not in (*CAMERAS, "all"):
        problems.append(f"camera must be one of {', '.join((*CAMERAS, 'all'))} (got {config.camera!r})")
    if config.frames < 1:
        problems.append(f"frames must be >= 1 (got {config.frames})")
    if config.seed < 0:
        problems.append(f"seed must be >= 0 (got {config.seed})")
    if not config.scale > 0:
        problems.append(f"scale must be > 0 (got {config.scale})")
    ranges = {
        "waypoints": (config.waypoints, 1),
        "distance": (config.distance, 1e-3),
        "target_height": (config.target_height, -math.inf),
        "elevation_deg": (config.elevation_deg, -89.0),
        "clutter": (config.clutter, 0),
        "lights": (config.lights, 1),
        "noise_sigma": (config.noise_sigma, 0.0),
    }
    for name, ((low, high), least) in ranges.items():
        if not least <= low <= high:
            problems.append(f"{name} must be (low, high) with {least} <= low <= high (got {(low, high)})")
    if config.elevation_deg[1] >= 90.0:
        problems.append(f"elevation_deg must stay below 90 (got {config.elevation_deg})")
    if not 0.0 < config.joint_range <= 1.0:
        problems.append(f"joint_range must be in (0, 1] (got {config.joint_range})")
    if not 0.0 <= config.view_margin < 0.5:
        problems.append(f"view_margin must be in [0, 0.5) (got {config.view_margin})")
    if not 1 <= config.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must be in 1..100 (got {config.jpeg_quality})")
    if config.max_tries < 1 or config.framing_radius <= 0 or config.roll_deg < 0:
        problems.append("max_tries and framing_radius must be positive, roll_deg >= 0")
    if not config.keypoint_bodies or not config.joints:
        problems.append("keypoint_bodies and joints must not be empty")
    if problems:
        raise LookalikeError("invalid look-alike settings: " + "; ".join(problems))


def generate(config: LookalikeConfig, progress: bool = True) -> list[SequenceResult]:
    """Write the sequence(s) `config` asks for; checks every output folder before rendering anything."""
    validate(config)
    names = list(CAMERAS) if config.camera == "all" else [config.camera]
    directories = [config.out / name for name in names] if config.camera == "all" else [config.out]
    robot = load_robot(config.robot)
    for directory in directories:
        prepare_output(directory, config.overwrite)
    return [generate_sequence(config, robot, name, directory, progress) for name, directory in zip(names, directories)]


def generate_sequence(
    config: LookalikeConfig, robot: RobotDescription, camera: str, directory: Path, progress: bool = True
) -> SequenceResult:
    """Sample, render and write one camera's sequence into the prepared `directory`."""
    start = time.perf_counter()
    seeds = np.random.SeedSequence([config.seed, list(CAMERAS).index(camera)]).spawn(4)  # one stream per camera
    rng_camera, rng_scene, rng_motion, rng_noise = (np.random.default_rng(s) for s in seeds)
    K, width, height = CAMERAS[camera].scaled(config.scale)
    viewmat, bearing = sample_camera(rng_camera, K, width, height, config)
    model = compile_scene(robot, rng_scene, bearing, K, width, height, viewmat, config)
    labels = Labels(model, JointSpec.from_mj_model(model), config)
    data = mujoco.MjData(model)
    valid = _frame_check(data, labels, viewmat, K, width, height, config)
    motion = sample_motion(rng_motion, labels.joint_spec, config, valid)  # [T, J]
    sigma = float(rng_noise.uniform(*config.noise_sigma))
    _write_metadata(directory, config, robot, camera, K, width, height, viewmat, sigma)
    with SceneRenderer(model, width, height, config.gl) as renderer:
        for index, joints in enumerate(tqdm(motion, desc=camera, unit="frame", disable=not progress)):
            labels.pose(data, joints)
            image = add_sensor_noise(renderer.render(data), sigma, rng_noise)  # [H, W, 3]
            keypoints_3d = labels.keypoints_camera(data, viewmat)  # [K, 3]
            write_frame(
                directory, index, image, labels.keypoint_names, keypoints_3d, project(K, keypoints_3d),
                labels.joint_names, labels.joint_values(data), object_class=config.prefix, units="m",
                jpeg_quality=config.jpeg_quality,
            )
    return SequenceResult(directory, len(motion), time.perf_counter() - start)


def prepare_output(directory: Path, overwrite: bool) -> None:
    """Create `directory` and check it is writable. A non-empty one is refused, or with `overwrite` cleared of
    a previous look-alike sequence's files (a folder without `_lookalike.json` is never touched)."""
    directory = Path(directory)
    if directory.is_dir() and any(directory.iterdir()):
        if not overwrite:
            raise LookalikeError(f"output folder {directory} is not empty; choose another --out or pass --overwrite")
        if not (directory / SETTINGS_FILE).is_file():
            raise LookalikeError(
                f"output folder {directory} is not empty and holds no look-alike sequence ({SETTINGS_FILE}); "
                "refusing to delete its files even with --overwrite: choose another --out"
            )
        for pattern in _OUR_FILES:
            for path in directory.glob(pattern):
                path.unlink()
    try:
        ensure_writable_dir(directory)
    except OSError as err:
        raise LookalikeError(f"cannot write the output folder {directory}: {err}; choose a writable --out") from err


def sample_camera(
    rng: np.random.Generator, K: np.ndarray, width: int, height: int, config: LookalikeConfig
) -> tuple[np.ndarray, float]:
    """A static camera looking at a point above the base: viewmat [4, 4] (world->camera, OpenCV) and the
    camera's bearing around the base (radians, from +x)."""
    target = np.array([0.0, 0.0, rng.uniform(*config.target_height)])
    bearing = rng.uniform(-math.pi, math.pi)
    elevation = math.radians(rng.uniform(*config.elevation_deg))
    half_fov = min(
        math.atan(min(K[0, 2], width - K[0, 2]) / K[0, 0]), math.atan(min(K[1, 2], height - K[1, 2]) / K[1, 1])
    )
    fit = config.framing_radius / math.sin(half_fov)
    distance = rng.uniform(max(config.distance[0], fit), max(config.distance[1], fit))
    roll = math.radians(rng.uniform(-config.roll_deg, config.roll_deg))
    return orbit_camera(target, bearing, elevation, distance, roll), bearing


def orbit_camera(target: np.ndarray, azimuth: float, elevation: float, distance: float, roll: float) -> np.ndarray:
    """World->camera viewmat [4, 4] (OpenCV) of a camera `distance` from `target` [3] at `azimuth` around +z and
    `elevation`, looking at it, rolled by `roll` about its optical axis (radians)."""
    viewmat = look_at(target + distance * _direction(azimuth, elevation), target)  # [4, 4]
    c, s = math.cos(roll), math.sin(roll)
    viewmat[:3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ viewmat[:3]
    return viewmat


def _direction(azimuth: float, elevation: float) -> np.ndarray:  # [3]
    """The unit vector at `azimuth` around +z from +x and `elevation` above the horizontal (radians)."""
    horizontal = math.cos(elevation)
    return np.array([horizontal * math.cos(azimuth), horizontal * math.sin(azimuth), math.sin(elevation)])


def pinhole_pose(viewmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position [3] and wxyz quaternion [4] of a MuJoCo world camera seeing what the OpenCV world->camera
    `viewmat` [4, 4] sees (MuJoCo cameras: x right, y up, looking along -z)."""
    rotation = viewmat[:3, :3]  # rows: camera axes in world
    eye = -rotation.T @ viewmat[:3, 3]
    frame = rotation.T @ np.diag([1.0, -1.0, -1.0])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(frame, dtype=np.float64).flatten())
    return eye, quat


def add_pinhole_camera(
    spec: mujoco.MjSpec, name: str, K: np.ndarray, width: int, height: int, viewmat: np.ndarray
) -> mujoco.MjsCamera:
    """Add a world camera that renders exactly the pinhole K [3, 3] (pixel centres at +0.5) at `width` x
    `height` from the OpenCV world->camera `viewmat` [4, 4]; the offscreen buffer grows to fit."""
    eye, quat = pinhole_pose(viewmat)
    camera = spec.worldbody.add_camera(name=name, pos=eye, quat=quat)
    camera.resolution = [width, height]
    camera.sensor_size = [1e-3 * width, 1e-3 * height]  # any size: focal_pixel and principal_pixel set K
    camera.focal_pixel = [K[0, 0], K[1, 1]]
    camera.principal_pixel = [width / 2.0 - K[0, 2], height / 2.0 - K[1, 2]]  # MuJoCo: centre minus (cx, cy)
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, width)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, height)
    return camera


def compile_scene(
    robot: RobotDescription, rng: np.random.Generator, bearing: float, K: np.ndarray, width: int, height: int,
    viewmat: np.ndarray, config: LookalikeConfig,
) -> mujoco.MjModel:
    """The robot in a random lab (`build_scene`) with the camera `CAMERA_NAME` (K [3, 3], viewmat [4, 4])."""
    spec = mujoco.MjSpec.from_file(str(robot.path))
    _focus_on_robot(spec, robot.mj_model())
    build_scene(spec, rng, bearing, config)
    add_pinhole_camera(spec, CAMERA_NAME, K, width, height, viewmat)
    try:
        return spec.compile()
    except ValueError as err:  # MuJoCo reports compile errors as ValueError
        raise LookalikeError(f"cannot build the scene around {robot.path}: {err}") from err


def _focus_on_robot(spec: mujoco.MjSpec, robot_model: mujoco.MjModel) -> None:
    """Give the scene the robot's own extent and centre: MuJoCo sizes shadow maps and clip planes by them,
    and the room's extent would blur the shadows and speckle them with acne."""
    spec.stat.extent = robot_model.stat.extent
    spec.stat.center = robot_model.stat.center


def build_scene(spec: mujoco.MjSpec, rng: np.random.Generator, bearing: float, config: LookalikeConfig) -> None:
    """Replace the robot's lights and surround it with a random lab: floor, sky, walls, tables, clutter,
    lights. Objects stay out of the camera's line of sight (tables and walls 75 degrees or more from the camera's
    bearing, small clutter 50 degrees or more)."""
    for light in spec.lights:
        light.active = False
    spec.visual.headlight.ambient = [rng.uniform(0.1, 0.25)] * 3
    spec.visual.headlight.diffuse = [rng.uniform(0.05, 0.2)] * 3
    spec.visual.headlight.specular = [0.0] * 3
    _add_floor_and_sky(spec, rng)
    _add_walls(spec, rng, bearing)
    tables = _add_tables(spec, rng, bearing)
    _add_clutter(spec, rng, bearing, tables, config.clutter)
    _add_lights(spec, rng, config.lights)


class _Table(NamedTuple):
    centre: np.ndarray  # [2] xy
    yaw: float
    half: np.ndarray  # [2] half extents along the table's own x, y
    top: float  # height of the top surface

    def holds(self, xy: np.ndarray) -> bool:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        local = np.array([[c, s], [-s, c]]) @ (xy - self.centre)
        return bool(np.all(np.abs(local) <= self.half))


def _muted_colour(rng: np.random.Generator, low: float = 0.25, high: float = 0.8) -> list[float]:
    """An rgb of grey level in [low, high] with a slight random tint (floors, walls, furniture)."""
    return list(np.clip(rng.uniform(low, high) + rng.uniform(-0.12, 0.12, 3), 0.0, 1.0))


def _material(spec: mujoco.MjSpec, name: str, rgb, rng: np.random.Generator, texture: str = "") -> str:
    material = spec.add_material(name=name, rgba=[*rgb, 1.0])
    material.specular = rng.uniform(0.1, 0.7)
    material.shininess = rng.uniform(0.1, 0.8)
    if texture:
        material.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = texture
        material.texrepeat = [rng.uniform(2.0, 6.0)] * 2
        material.texuniform = True
    return name


def _add_geom(spec: mujoco.MjSpec, kind: mujoco.mjtGeom, size, pos, yaw: float, material: str) -> None:
    quat = [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]
    spec.worldbody.add_geom(type=kind, size=list(size), pos=list(pos), quat=quat, material=material)


def _add_floor_and_sky(spec: mujoco.MjSpec, rng: np.random.Generator) -> None:
    """A plain or checkered floor plane at z = 0 and a gradient skybox."""
    floor_rgb = _muted_colour(rng)
    texture = ""
    if rng.random() < 0.5:
        texture = "lookalike_floor"
        spec.add_texture(
            name=texture, type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
            width=256, height=256, rgb1=floor_rgb, rgb2=_muted_colour(rng),
        )
        floor_rgb = [1.0, 1.0, 1.0]
    material = _material(spec, "lookalike_floor", floor_rgb, rng, texture)
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[6.0, 6.0, 0.05], material=material)
    spec.add_texture(
        name="lookalike_sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        width=256, height=1536, rgb1=_muted_colour(rng, 0.5, 0.9), rgb2=_muted_colour(rng, 0.1, 0.4),
    )


def _away_from_camera(rng: np.random.Generator, bearing: float, clearance_deg: float) -> float:
    """A bearing at least `clearance_deg` from the camera's (beside or behind the robot)."""
    return bearing + math.radians(rng.uniform(clearance_deg, 360.0 - clearance_deg))


def _add_walls(spec: mujoco.MjSpec, rng: np.random.Generator, bearing: float) -> None:
    """One or two coloured walls 2.5-3.5 m from the base, facing it (beyond the cameras' 2 m)."""
    for k in range(rng.integers(1, 3)):
        angle, radius = _away_from_camera(rng, bearing, 75.0), rng.uniform(2.5, 3.5)
        material = _material(spec, f"lookalike_wall{k}", _muted_colour(rng, 0.4, 0.9), rng)
        height = rng.uniform(2.0, 3.0)
        position = [radius * math.cos(angle), radius * math.sin(angle), height / 2.0]
        _add_geom(spec, mujoco.mjtGeom.mjGEOM_BOX, [0.05, 4.0, height / 2.0], position, angle, material)


def _add_tables(spec: mujoco.MjSpec, rng: np.random.Generator, bearing: float) -> list[_Table]:
    """One or two table-like boxes whose nearest corner is at least 0.5 m from the base."""
    tables = []
    for k in range(rng.integers(1, 3)):
        half = rng.uniform(0.2, 0.4, 2)
        top = rng.uniform(0.3, 0.8)
        angle, yaw = _away_from_camera(rng, bearing, 75.0), rng.uniform(-math.pi, math.pi)
        radius = 0.5 + float(np.linalg.norm(half)) + rng.uniform(0.0, 0.3)
        centre = radius * np.array([math.cos(angle), math.sin(angle)])
        material = _material(spec, f"lookalike_table{k}", _muted_colour(rng, 0.2, 0.9), rng)
        _add_geom(spec, mujoco.mjtGeom.mjGEOM_BOX, [*half, top / 2.0], [*centre, top / 2.0], yaw, material)
        tables.append(_Table(centre, yaw, half, top))
    return tables


def _add_clutter(
    spec: mujoco.MjSpec, rng: np.random.Generator, bearing: float, tables: list[_Table], count: tuple[int, int]
) -> None:
    """Boxes, cylinders and spheres of random colours 0.5-1.2 m from the base, on the floor or on a table."""
    kinds = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_SPHERE)
    for k in range(rng.integers(count[0], count[1] + 1)):
        kind = kinds[rng.integers(len(kinds))]
        size = rng.uniform(0.03, 0.1, 3)  # half extents (box), radius + half height (cylinder), radius (sphere)
        half_height = {kinds[0]: size[2], kinds[1]: size[1], kinds[2]: size[0]}[kind]
        angle, radius = _away_from_camera(rng, bearing, 50.0), rng.uniform(0.5, 1.2)
        xy = radius * np.array([math.cos(angle), math.sin(angle)])
        ground = max([t.top for t in tables if t.holds(xy)], default=0.0)
        material = _material(spec, f"lookalike_clutter{k}", list(rng.uniform(0.05, 0.95, 3)), rng)
        _add_geom(spec, kind, size, [*xy, ground + half_height], rng.uniform(-math.pi, math.pi), material)


def _add_lights(spec: mujoco.MjSpec, rng: np.random.Generator, count: tuple[int, int]) -> None:
    """Shadow-casting spot lights 2-3.5 m away, above the robot from random directions, aimed at it.

    Each light's shadow map covers its whole cone (`shadowscale` 1) and its light fades to a few percent by
    the cone's edge: lit floor outside a shadow map, or a bright hard cone edge, is speckled with shadow acne
    (as is the floor beyond the reach of a directional light's shadow map, hence no directional lights)."""
    spec.visual.map.shadowscale = 1.0
    n = int(rng.integers(count[0], count[1] + 1))
    for _ in range(n):
        azimuth, elevation = rng.uniform(-math.pi, math.pi), math.radians(rng.uniform(35.0, 80.0))
        towards = -_direction(azimuth, elevation)
        light = spec.worldbody.add_light(
            type=mujoco.mjtLightType.mjLIGHT_SPOT,
            pos=list(np.array([0.0, 0.0, 0.3]) - rng.uniform(2.0, 3.5) * towards),
            dir=list(towards),
            castshadow=True,
            cutoff=rng.uniform(50.0, 70.0),
            exponent=rng.uniform(5.0, 10.0),  # cos(cutoff) ** exponent <= 0.03
        )
        light.diffuse = [rng.uniform(0.6, 1.0) / math.sqrt(n)] * 3
        light.specular = [rng.uniform(0.1, 0.4)] * 3
        light.ambient = [rng.uniform(0.0, 0.1)] * 3


class Labels:
    """The DREAM labels of one robot in a compiled scene: keypoint bodies and recorded joints by name."""

    def __init__(self, model: mujoco.MjModel, joint_spec: JointSpec, config: LookalikeConfig):
        self.model, self.joint_spec = model, joint_spec
        self.moving_geoms = model.body_weldid[model.geom_bodyid] != 0  # [ngeom] geoms that move with a joint
        body_ids = [self._id(mujoco.mjtObj.mjOBJ_BODY, b, "body", "keypoint_bodies") for b in config.keypoint_bodies]
        self.body_ids = np.array(body_ids)
        joint_ids = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j, "joint", "joints") for j in config.joints]
        self.qpos_ids = model.jnt_qposadr[joint_ids]
        self.keypoint_names = tuple(f"{config.prefix}_{b}" for b in config.keypoint_bodies)
        self.joint_names = tuple(f"{config.prefix}/{config.prefix}_{j}" for j in config.joints)

    def pose(self, data: mujoco.MjData, joints: np.ndarray) -> None:
        """Set the pose vector `joints` [J] and run mj_forward (positions and contacts; never mj_step)."""
        data.qpos[:] = self.joint_spec.to_qpos(joints)
        mujoco.mj_forward(self.model, data)

    def keypoints_camera(self, data: mujoco.MjData, viewmat: np.ndarray) -> np.ndarray:  # [K, 3]
        """Keypoint body origins in the camera frame (OpenCV, metres)."""
        return data.xpos[self.body_ids] @ viewmat[:3, :3].T + viewmat[:3, 3]

    def joint_values(self, data: mujoco.MjData) -> np.ndarray:  # [J_recorded]
        return data.qpos[self.qpos_ids].copy()

    def collides(self, data: mujoco.MjData, tolerance: float) -> bool:
        """Whether a moving body penetrates anything (itself, the robot, the scene) deeper than `tolerance`."""
        return penetrates(data, self.moving_geoms, tolerance)

    def _id(self, kind: mujoco.mjtObj, name: str, what: str, field: str) -> int:
        index = mujoco.mj_name2id(self.model, kind, name)
        if index < 0:
            count = self.model.nbody if kind == mujoco.mjtObj.mjOBJ_BODY else self.model.njnt
            known = [mujoco.mj_id2name(self.model, kind, i) for i in range(count)]
            raise LookalikeError(
                f"the robot has no {what} {name!r}; set --{field.replace('_', '-')} to some of: "
                + ", ".join(n for n in known if n)
            )
        return index


def penetrates(data: mujoco.MjData, moving: np.ndarray, tolerance: float) -> bool:
    """Whether a geom flagged in `moving` [ngeom] penetrates anything deeper than `tolerance` (after mj_forward)."""
    return any(c.dist < -tolerance and (moving[c.geom1] or moving[c.geom2]) for c in data.contact[: data.ncon])


def project(K: np.ndarray, points: np.ndarray) -> np.ndarray:  # [N, 2]
    """Pixel coordinates (centres at +0.5) of camera-frame points [N, 3] under K [3, 3]."""
    return points[:, :2] / points[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]


def _frame_check(
    data: mujoco.MjData, labels: Labels, viewmat: np.ndarray, K: np.ndarray,
    width: int, height: int, config: LookalikeConfig,
) -> Callable[[np.ndarray], bool]:
    """A test of a run of poses [M, J]: every one collision-free with its keypoints inside the image margin."""
    margin = config.view_margin * np.array([width, height])
    size = np.array([width, height])

    def valid(poses: np.ndarray) -> bool:
        for joints in poses:
            labels.pose(data, joints)
            if labels.collides(data, config.collision_tolerance):
                return False
            points = labels.keypoints_camera(data, viewmat)  # [K, 3]
            if np.any(points[:, 2] < 0.1):
                return False
            uv = project(K, points)  # [K, 2]
            if np.any(uv < margin) or np.any(uv > size - margin):
                return False
        return True

    return valid


def sample_motion(
    rng: np.random.Generator, joint_spec: JointSpec, config: LookalikeConfig, valid: Callable[[np.ndarray], bool]
) -> np.ndarray:  # [T, J]
    """A smooth trajectory through random waypoints (cosine blends: at rest at each waypoint), each waypoint
    redrawn until `valid` accepts every frame of the segment leading to it."""
    frames = config.frames
    count = min(int(rng.integers(config.waypoints[0], config.waypoints[1] + 1)), frames)
    s = np.linspace(0.0, count - 1, frames)  # [T] position along the waypoints
    segment = np.minimum(s.astype(int), max(count - 2, 0))  # [T]
    fraction = s - segment  # [T]
    centre = (joint_spec.lower + joint_spec.upper) / 2  # [J]
    half = config.joint_range * (joint_spec.upper - joint_spec.lower) / 2  # [J]

    def draw(frames_of: Callable[[np.ndarray], np.ndarray], what: str) -> np.ndarray:
        for _ in range(config.max_tries):
            waypoint = rng.uniform(centre - half, centre + half)  # [J]
            if valid(frames_of(waypoint)):
                return waypoint
        raise LookalikeError(
            f"no {what} in {config.max_tries} tries keeps the robot collision-free and in view; raise --max-tries, "
            "try another --seed, or widen --distance / lower --view-margin"
        )

    path = np.empty((frames, joint_spec.dof))
    previous = draw(lambda w: w[None], "first waypoint")
    path[:] = previous
    for k in range(count - 1):
        t = fraction[segment == k]  # [M]
        checked = np.append(t, 1.0)  # the next segment starts at this waypoint: it must pass too
        start = previous
        previous = draw(lambda w: _blend(start, w, checked), f"waypoint {k + 2} of {count}")
        path[segment == k] = _blend(start, previous, t)
    return path


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:  # [M, J]
    """Cosine interpolation from a [J] to b [J] at fractions t [M] (zero velocity at both ends)."""
    weight = (1.0 - np.cos(math.pi * t))[:, None] / 2.0
    return a + weight * (b - a)


class SceneRenderer:
    """Renders a compiled scene through its camera `CAMERA_NAME`, with shadows, sky and MSAA, headless."""

    def __init__(self, model: mujoco.MjModel, width: int, height: int, gl: str = "auto"):
        self.model, self.width, self.height = model, width, height
        self._gl = _gl_context(select_gl_backend(gl), width, height)
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=max(1000, 2 * model.ngeom))
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = True
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._rect = mujoco.MjrRect(0, 0, width, height)
        self._rgb = np.empty((height, width, 3), np.uint8)

    def render(self, data: mujoco.MjData) -> np.ndarray:  # [H, W, 3] uint8
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._rgb, None, self._rect, self._context)
        return self._rgb[::-1].copy()  # OpenGL rows are bottom-up

    def close(self) -> None:
        if getattr(self, "_context", None) is not None:
            self._gl.make_current()
            self._context.free()
            self._gl.free()
            self._context = None

    def __enter__(self) -> "SceneRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_sensor_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:  # [H, W, 3] uint8
    """Gaussian noise of `sigma` 8-bit levels on every channel of `image` [H, W, 3] uint8."""
    noisy = image + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _write_metadata(
    directory: Path, config: LookalikeConfig, robot: RobotDescription, camera: str, K: np.ndarray,
    width: int, height: int, viewmat: np.ndarray, sigma: float,
) -> None:
    """`_lookalike.json` (settings, first: it marks the folder as ours), camera settings, true camera."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_ONLY_FIELDS}
    settings = json.loads(json.dumps(settings))  # tuples -> lists
    write_json_atomic(
        directory / SETTINGS_FILE,
        {"camera": camera, "seed": config.seed, "frames": config.frames, "robot_sha256": robot.content_hash,
         "noise_sigma": sigma, "settings": settings},
    )
    write_camera_settings(directory, K, width, height, name=camera)
    write_json_atomic(
        directory / GROUND_TRUTH_CAMERA,
        {"viewmat": viewmat.tolist(), "K": K.tolist(), "width": width, "height": height,
         "convention": "OpenCV camera (x right, y down, z forward); viewmat world->camera; pixel centres at +0.5"},
    )
